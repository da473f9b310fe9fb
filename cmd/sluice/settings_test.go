package main

import (
	"testing"
	"time"

	"sluice/config"
)

// TestServerSettingsChanged: every client-side setting the front server is
// built with is seen as changed (a reload then warns that it applies to
// new listeners only); settings a reload applies at once are not.
func TestServerSettingsChanged(t *testing.T) {
	base := func() *config.Config {
		c, err := config.Parse("s.yaml", []byte("routes: [{pool: p}]\npools: {p: {backends: [{address: 127.0.0.1:1}]}}\n"))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	tests := []struct {
		name   string
		change func(*config.Config)
		want   bool
	}{
		{"nothing", func(*config.Config) {}, false},
		{"client_read", func(c *config.Config) { c.Timeouts.ClientRead = time.Second }, true},
		{"client_write", func(c *config.Config) { c.Timeouts.ClientWrite = time.Second }, true},
		{"idle", func(c *config.Config) { c.Timeouts.Idle = time.Second }, true},
		{"max_header_bytes", func(c *config.Config) { c.Limits.MaxHeaderBytes = 4096 }, true},
		{"max_body_bytes", func(c *config.Config) { c.Limits.MaxBodyBytes = 1 }, true},
		{"max_client_conns", func(c *config.Config) { c.Limits.MaxClientConns = 10 }, true},
		{"response timeout (applied at once)", func(c *config.Config) { c.Timeouts.Response = time.Second }, false},
		{"forwarding (applied at once)", func(c *config.Config) { c.Forwarding.RequestID = false }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, b := base(), base()
			tt.change(b)
			if got := serverSettingsChanged(a, b); got != tt.want {
				t.Errorf("serverSettingsChanged = %v, want %v", got, tt.want)
			}
		})
	}
}
