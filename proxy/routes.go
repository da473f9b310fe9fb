package proxy

import (
	"bytes"
	"sort"
	"strings"
	"sync/atomic"

	"sluice/metrics"
)

// route is one compiled routes[] entry.
type route struct {
	name   string
	prefix []byte
	pool   *pool
	// Metric handles, resolved when the snapshot is built: requests is
	// parallel to pool.targets; noBackend counts requests no backend took.
	series    *metrics.RouteSeries
	requests  []*metrics.RequestCounters
	noBackend *metrics.RequestCounters
	// inFlight counts the requests routed by this route and by every
	// other snapshot's route of the same name and pool, which share it:
	// the controller keeps their series until it is 0 once a reload has
	// removed the route or pointed it elsewhere (forgetSeries).
	inFlight *atomic.Int64
}

// routeList holds the routes of one host group, longest prefix first.
type routeList []*route

func (l routeList) match(path []byte) *route {
	for _, r := range l {
		if bytes.HasPrefix(path, r.prefix) {
			return r
		}
	}
	return nil
}

type wildcardGroup struct {
	suffix string // ".example.com" for *.example.com
	routes routeList
}

// routeTable answers "which route takes this request" without locks or
// allocation. The most specific route wins, whatever the file order:
// exact host, then the longest matching wildcard, then routes without a
// host; within a group the longest matching path prefix. When no route of
// a more specific host group matches the path, the next group is tried.
type routeTable struct {
	exact    map[string]routeList
	wildcard []wildcardGroup // longest suffix first
	any      routeList
}

func newRouteTable(routes []*route, hosts []string) routeTable {
	t := routeTable{exact: map[string]routeList{}}
	wild := map[string]routeList{}
	for i, r := range routes {
		h := hosts[i]
		switch {
		case h == "":
			t.any = append(t.any, r)
		case strings.HasPrefix(h, "*."):
			wild[h[1:]] = append(wild[h[1:]], r)
		default:
			t.exact[h] = append(t.exact[h], r)
		}
	}
	for s, l := range wild {
		t.wildcard = append(t.wildcard, wildcardGroup{suffix: s, routes: l})
	}
	sort.Slice(t.wildcard, func(i, j int) bool {
		a, b := t.wildcard[i].suffix, t.wildcard[j].suffix
		if len(a) != len(b) {
			return len(a) > len(b)
		}
		return a < b
	})
	byPrefix := func(l routeList) {
		sort.SliceStable(l, func(i, j int) bool { return len(l[i].prefix) > len(l[j].prefix) })
	}
	for _, l := range t.exact {
		byPrefix(l)
	}
	for _, g := range t.wildcard {
		byPrefix(g.routes)
	}
	byPrefix(t.any)
	return t
}

// named finds the route of the given name that takes its requests to the
// given pool, nil if there is none: a retry after a reload uses it (a
// rare path: it looks at every route).
func (t *routeTable) named(name, pool string) *route {
	find := func(l routeList) *route {
		for _, r := range l {
			if r.name == name && r.pool != nil && r.pool.name == pool {
				return r
			}
		}
		return nil
	}
	if r := find(t.any); r != nil {
		return r
	}
	for _, l := range t.exact {
		if r := find(l); r != nil {
			return r
		}
	}
	for i := range t.wildcard {
		if r := find(t.wildcard[i].routes); r != nil {
			return r
		}
	}
	return nil
}

// match finds the route for a lower-case host without port and a
// normalised path.
func (t *routeTable) match(host, path []byte) *route {
	if len(host) > 0 {
		// Without exact-host routes (a single site, say) the map
		// lookup, which showed in profiles, is skipped.
		if len(t.exact) > 0 {
			if l, ok := t.exact[string(host)]; ok {
				if r := l.match(path); r != nil {
					return r
				}
			}
		}
		for i := range t.wildcard {
			g := &t.wildcard[i]
			if len(host) > len(g.suffix) && bytes.HasSuffix(host, []byte(g.suffix)) {
				if r := g.routes.match(path); r != nil {
					return r
				}
			}
		}
	}
	return t.any.match(path)
}

// normalizeHost strips the port and lower-cases host into buf when needed,
// returning a slice that is valid until buf is reused.
func normalizeHost(host []byte, buf []byte) []byte {
	if i := bytes.LastIndexByte(host, ':'); i >= 0 && bytes.IndexByte(host[i:], ']') < 0 {
		host = host[:i]
	}
	if len(host) > 1 && host[0] == '[' && host[len(host)-1] == ']' {
		host = host[1 : len(host)-1]
	}
	if len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	upper := false
	for _, c := range host {
		if c >= 'A' && c <= 'Z' {
			upper = true
			break
		}
	}
	if !upper || len(host) > len(buf) {
		return host
	}
	out := buf[:len(host)]
	for i, c := range host {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		out[i] = c
	}
	return out
}
