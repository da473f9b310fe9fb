package admin

import (
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"sluice/config"
)

// r25OpsServeConfig serves the admin API over cfg (no controller
// calls are made by the endpoints these tests use).
func r25OpsServeConfig(t *testing.T, cfg *config.Config) string {
	t.Helper()
	return serve(t, Handler(Options{
		Controller: &fakeController{},
		Ready:      func() bool { return true },
		Config:     func() ConfigInfo { return ConfigInfo{Config: cfg, Generation: 3, LoadedAt: time.Unix(1700000000, 0)} },
	}))
}

// TestOpsConfigYAMLLoadsBack: the running config that GET
// /admin/config?format=yaml shows is a config file sluice takes, with
// the same meaning (examples/full.yaml, every key).
func TestOpsConfigYAMLLoadsBack(t *testing.T) {
	src, err := os.ReadFile("../examples/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Parse("full.yaml", src)
	if err != nil {
		t.Fatal(err)
	}
	base := r25OpsServeConfig(t, cfg)
	for _, format := range []string{"yaml", "json"} {
		code, body := call(t, "GET", base+"/admin/config?format="+format, "")
		if code != 200 {
			t.Fatalf("format %s: %d %s", format, code, body)
		}
		text := body
		if format == "json" {
			var v struct{ Config json.RawMessage }
			if err := json.Unmarshal([]byte(body), &v); err != nil {
				t.Fatal(err)
			}
			text = string(v.Config)
		}
		back, err := config.Parse("back.yaml", []byte(text))
		if err != nil {
			t.Errorf("format %s: the shown config does not load back: %v\n%s", format, err, text)
			continue
		}
		// Same meaning, the redacted secret aside (compared with a copy
		// of its own: cfg is the one being served).
		orig, _ := config.Parse("full.yaml", src)
		back.Pools["web"].Sticky.Secret = orig.Pools["web"].Sticky.Secret
		for _, c := range []*config.Config{orig, back} {
			c.File, c.Source = "", nil
			for _, p := range c.Pools {
				if len(p.Backends) == 0 {
					p.Backends = nil
				}
			}
		}
		a, _ := json.Marshal(orig)
		b, _ := json.Marshal(back)
		if string(a) != string(b) {
			t.Errorf("format %s: loaded back differs:\n%s\n%s", format, a, b)
		}
		if !strings.Contains(text, "REDACTED") {
			t.Errorf("format %s: secret not redacted", format)
		}
	}
}
