package config

import "testing"

// TestStickyCookieDistinctHosts: the affinity cookie sluice sets
// is host-only ("NAME=ID; Path=/; HttpOnly; SameSite=Lax", no Domain), so
// two sticky pools that serve different hosts never see each other's
// cookie: a browser keeps one value per (host, name, path). stickyCookies
// refuses any two pools with one cookie name, whatever their routes, so a
// multi-tenant config that ran before this session (shop.example.com and
// blog.example.com, each `algorithm: sticky`) no longer starts or reloads.
func TestStickyCookieDistinctHosts(t *testing.T) {
	const y = `routes:
  - { match: { host: shop.example.com }, pool: shop }
  - { match: { host: blog.example.com }, pool: blog }
pools:
  shop: { algorithm: sticky, backends: [{ address: '127.0.0.1:1' }] }
  blog: { algorithm: sticky, backends: [{ address: '127.0.0.1:2' }] }
`
	// Found by review, fixed: expected no error (the pools' cookies live on different hosts
	// and cannot overwrite each other); it was "pools.blog.algorithm:
	// affinity cookie sluice_affinity is pool shop's too".
	if _, err := Parse("s.yaml", []byte(y)); err != nil {
		t.Errorf("Parse = %v, want no error: each pool's host-only cookie lives on its own host", err)
	}
}
