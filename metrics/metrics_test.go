package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
)

// series gathers m and returns every sample of family name as a map from
// its labels ("k=v,k=v" in label-name order) to its value; histograms give
// their sample count.
func series(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, mt := range mf.GetMetric() {
			out[labelKey(mt)] = value(mt)
		}
	}
	return out
}

func labelKey(mt *dto.Metric) string {
	var parts []string
	for _, lp := range mt.GetLabel() {
		parts = append(parts, lp.GetName()+"="+lp.GetValue())
	}
	return strings.Join(parts, ",")
}

func value(mt *dto.Metric) float64 {
	switch {
	case mt.Counter != nil:
		return mt.Counter.GetValue()
	case mt.Gauge != nil:
		return mt.Gauge.GetValue()
	case mt.Histogram != nil:
		return float64(mt.Histogram.GetSampleCount())
	}
	return 0
}

func TestRequestCounters(t *testing.T) {
	m := New("test")
	a := m.Requests("api", "web", "10.0.0.1:80")
	b := m.Requests("api", "web", "10.0.0.2:80")
	none := m.Requests("api", "web", "")
	noRoute := m.Requests("", "", "")
	if again := m.Requests("api", "web", "10.0.0.1:80"); again != a {
		t.Errorf("Requests() twice = %p, %p, want the same handle", a, again)
	}
	for _, s := range []int{200, 204, 299, 301, 404, 404, 500, 502, 503, 101} {
		a.Inc(s)
	}
	for range 7 {
		b.Inc(200)
	}
	none.Inc(503)
	noRoute.Inc(404)
	// Not HTTP statuses: counted as failures.
	a.Inc(0)
	a.Inc(99)
	a.Inc(600)
	a.Inc(-1)

	got := series(t, m, "sluice_requests_total")
	tests := []struct {
		name string
		give string
		want float64
	}{
		{"a 1xx", "backend=10.0.0.1:80,code=1xx,pool=web,route=api", 1},
		{"a 2xx", "backend=10.0.0.1:80,code=2xx,pool=web,route=api", 3},
		{"a 3xx", "backend=10.0.0.1:80,code=3xx,pool=web,route=api", 1},
		{"a 4xx", "backend=10.0.0.1:80,code=4xx,pool=web,route=api", 2},
		{"a 5xx", "backend=10.0.0.1:80,code=5xx,pool=web,route=api", 3 + 4},
		{"b 2xx", "backend=10.0.0.2:80,code=2xx,pool=web,route=api", 7},
		{"b 5xx at zero", "backend=10.0.0.2:80,code=5xx,pool=web,route=api", 0},
		{"no backend", "backend=,code=5xx,pool=web,route=api", 1},
		{"no route", "backend=,code=4xx,pool=,route=", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v, ok := got[tt.give]
			if !ok {
				t.Fatalf("no series {%s}", tt.give)
			}
			if v != tt.want {
				t.Errorf("{%s} = %v, want %v", tt.give, v, tt.want)
			}
		})
	}
	// Four rows, five classes each, all created up front.
	if n := len(got); n != 4*5 {
		t.Errorf("sluice_requests_total has %d series, want %d", n, 4*5)
	}
}

func TestBackendSeries(t *testing.T) {
	m := New("test")
	b := m.Backend("web", "10.0.0.1:80")
	if again := m.Backend("web", "10.0.0.1:80"); again != b {
		t.Errorf("Backend() twice = %p, %p, want the same handle", b, again)
	}
	b.ObserveUpstream(3 * time.Millisecond)
	b.ObserveUpstream(40 * time.Millisecond)
	b.UpstreamError(KindConnect)
	b.UpstreamError(KindTimeout)
	b.UpstreamError(KindTimeout)
	b.UpstreamError(KindReset)
	b.UpstreamError(ErrorKind(200)) // out of range: other
	b.SetUp(true)
	b.SetWeight(2.5)
	b.SetState(StateDraining)
	b.HealthCheck(true)
	b.HealthCheck(true)
	b.HealthCheck(false)
	b.Ejected()
	conns := 3
	b.SetConnsFunc(func() int { return conns })

	const lb = "backend=10.0.0.1:80"
	tests := []struct {
		name   string
		family string
		labels string
		want   float64
	}{
		{"upstream observations", "sluice_upstream_duration_seconds", lb + ",pool=web", 2},
		{"connect errors", "sluice_upstream_errors_total", lb + ",kind=connect,pool=web", 1},
		{"timeouts", "sluice_upstream_errors_total", lb + ",kind=timeout,pool=web", 2},
		{"resets", "sluice_upstream_errors_total", lb + ",kind=reset,pool=web", 1},
		{"other", "sluice_upstream_errors_total", lb + ",kind=other,pool=web", 1},
		{"up", "sluice_backend_up", lb + ",pool=web", 1},
		{"weight", "sluice_backend_weight", lb + ",pool=web", 2.5},
		{"draining", "sluice_backend_state", lb + ",pool=web,state=draining", 1},
		{"not healthy", "sluice_backend_state", lb + ",pool=web,state=healthy", 0},
		{"not unhealthy", "sluice_backend_state", lb + ",pool=web,state=unhealthy", 0},
		{"not ejected", "sluice_backend_state", lb + ",pool=web,state=ejected", 0},
		{"check successes", "sluice_health_checks_total", lb + ",pool=web,result=success", 2},
		{"check failures", "sluice_health_checks_total", lb + ",pool=web,result=failure", 1},
		{"ejections", "sluice_outlier_ejections_total", lb + ",pool=web", 1},
		{"connections", "sluice_upstream_connections", lb + ",pool=web", 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := series(t, m, tt.family)
			v, ok := got[tt.labels]
			if !ok {
				t.Fatalf("%s has no series {%s}; has %v", tt.family, tt.labels, got)
			}
			if v != tt.want {
				t.Errorf("%s{%s} = %v, want %v", tt.family, tt.labels, v, tt.want)
			}
		})
	}

	b.SetState(StateEjected)
	b.SetUp(false)
	st := series(t, m, "sluice_backend_state")
	if st[lb+",pool=web,state=ejected"] != 1 || st[lb+",pool=web,state=draining"] != 0 {
		t.Errorf("after SetState(ejected) states = %v, want only ejected at 1", st)
	}
	if v := series(t, m, "sluice_backend_up")[lb+",pool=web"]; v != 0 {
		t.Errorf("after SetUp(false) sluice_backend_up = %v, want 0", v)
	}
	b.SetConnsFunc(nil)
	if got := series(t, m, "sluice_upstream_connections"); len(got) != 0 {
		t.Errorf("after SetConnsFunc(nil) sluice_upstream_connections = %v, want none", got)
	}
}

func TestGlobalSeries(t *testing.T) {
	m := New("v1.2.3")
	m.InFlightAdd(1)
	m.InFlightAdd(1)
	m.InFlightAdd(-1)
	m.ConnOpened()
	m.ConnOpened()
	m.ConnOpened()
	m.ConnClosed()
	m.Bytes(100, 2000)
	m.Bytes(-1, 5) // fasthttp's unknown length must not panic the counter
	m.AccessLogDropped()
	m.AccessLogDropped()
	at := time.Unix(1700000000, 500_000_000)
	m.Loaded(6, at.Add(-time.Hour)) // the start: not a reload
	m.Reload(true, 7, at)
	m.Reload(false, 8, at.Add(time.Minute))
	m.Reload(false, 9, at.Add(2*time.Minute))
	p := m.Pool("web")
	if again := m.Pool("web"); again != p {
		t.Errorf("Pool() twice = %p, %p, want the same handle", p, again)
	}
	p.Retry()
	p.Retry()
	p.NoBackend()
	r := m.Route("api")
	if again := m.Route("api"); again != r {
		t.Errorf("Route() twice = %p, %p, want the same handle", r, again)
	}
	r.ObserveDuration(time.Millisecond)

	tests := []struct {
		family string
		labels string
		want   float64
	}{
		{"sluice_requests_in_flight", "", 1},
		{"sluice_downstream_connections", "", 2},
		{"sluice_request_bytes_total", "", 100},
		{"sluice_response_bytes_total", "", 2005},
		{"sluice_access_log_dropped_total", "", 2},
		{"sluice_config_reloads_total", "result=success", 1},
		{"sluice_config_reloads_total", "result=failure", 2},
		{"sluice_config_generation", "", 7},
		{"sluice_config_last_reload_success_timestamp_seconds", "", 1700000000.5},
		{"sluice_retries_total", "pool=web", 2},
		{"sluice_no_backend_total", "pool=web", 1},
		{"sluice_request_duration_seconds", "route=api", 1},
		{"sluice_build_info", "goversion=" + goVersion(t, m) + ",version=v1.2.3", 1},
	}
	for _, tt := range tests {
		t.Run(tt.family+"{"+tt.labels+"}", func(t *testing.T) {
			got := series(t, m, tt.family)
			v, ok := got[tt.labels]
			if !ok {
				t.Fatalf("%s has no series {%s}; has %v", tt.family, tt.labels, got)
			}
			if v != tt.want {
				t.Errorf("%s{%s} = %v, want %v", tt.family, tt.labels, v, tt.want)
			}
		})
	}
}

func goVersion(t *testing.T, m *Metrics) string {
	t.Helper()
	for k := range series(t, m, "sluice_build_info") {
		for _, kv := range strings.Split(k, ",") {
			if v, ok := strings.CutPrefix(kv, "goversion="); ok && strings.HasPrefix(v, "go") {
				return v
			}
		}
	}
	t.Fatal("sluice_build_info has no goversion label")
	return ""
}

// touchAll creates at least one series in every family, so that Gather
// lists them all.
func touchAll(m *Metrics) {
	b := m.Backend("web", "10.0.0.1:80")
	b.ObserveUpstream(time.Millisecond)
	b.UpstreamError(KindReset)
	b.SetUp(true)
	b.SetWeight(1)
	b.SetState(StateHealthy)
	b.HealthCheck(true)
	b.Ejected()
	b.SetConnsFunc(func() int { return 1 })
	m.Route("api").ObserveDuration(time.Millisecond)
	m.Requests("api", "web", "10.0.0.1:80").Inc(200)
	m.Pool("web").Retry()
	m.Pool("web").NoBackend()
	m.InFlightAdd(1)
	m.ConnOpened()
	m.Bytes(1, 1)
	m.Reload(true, 1, time.Now())
	m.AccessLogDropped()
}

// families is every sluice family the package promises.
var families = []string{
	"sluice_requests_total",
	"sluice_request_duration_seconds",
	"sluice_upstream_duration_seconds",
	"sluice_requests_in_flight",
	"sluice_downstream_connections",
	"sluice_upstream_connections",
	"sluice_request_bytes_total",
	"sluice_response_bytes_total",
	"sluice_backend_up",
	"sluice_backend_weight",
	"sluice_backend_state",
	"sluice_health_checks_total",
	"sluice_outlier_ejections_total",
	"sluice_upstream_errors_total",
	"sluice_retries_total",
	"sluice_no_backend_total",
	"sluice_config_reloads_total",
	"sluice_config_last_reload_success_timestamp_seconds",
	"sluice_config_generation",
	"sluice_build_info",
	"sluice_access_log_dropped_total",
}

func TestEveryFamilyExported(t *testing.T) {
	m := New("test")
	touchAll(m)
	for _, name := range families {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n == 0 {
			t.Errorf("GatherAndCount(%s) = %d, %v, want > 0 series", name, n, err)
		}
	}
	// The runtime collectors are there too.
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total"} {
		if n, err := testutil.GatherAndCount(m.Registry(), name); err != nil || n == 0 {
			t.Errorf("GatherAndCount(%s) = %d, %v, want > 0 series", name, n, err)
		}
	}
}

func TestLint(t *testing.T) {
	m := New("test")
	touchAll(m)
	problems, err := testutil.GatherAndLint(m.Registry())
	if err != nil {
		t.Fatalf("GatherAndLint() error = %v", err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
}

func TestForgetBackend(t *testing.T) {
	m := New("test")
	touchAll(m)
	const gone, kept = "10.0.0.1:80", "10.0.0.2:80"
	m.Requests("other", "web", gone).Inc(500)
	m.Requests("api", "web", "").Inc(503)
	k := m.Backend("web", kept)
	k.SetUp(true)
	k.SetConnsFunc(func() int { return 2 })
	m.Requests("api", "web", kept).Inc(200)
	// The same address in another pool is another backend.
	m.Backend("batch", gone).SetUp(true)
	before := m.Backend("web", gone)

	m.ForgetBackend("web", gone)

	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	var keptSeen, otherPoolSeen bool
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			var pool, backend string
			for _, lp := range mt.GetLabel() {
				switch lp.GetName() {
				case "pool":
					pool = lp.GetValue()
				case "backend":
					backend = lp.GetValue()
				}
			}
			switch {
			case pool == "web" && backend == gone:
				t.Errorf("after ForgetBackend %s{%s} still exported", mf.GetName(), labelKey(mt))
			case backend == kept:
				keptSeen = true
			case pool == "batch" && backend == gone:
				otherPoolSeen = true
			}
		}
	}
	if !keptSeen || !otherPoolSeen {
		t.Errorf("ForgetBackend removed other backends' series: kept %v, other pool %v", keptSeen, otherPoolSeen)
	}
	if v := series(t, m, "sluice_requests_total")["backend=,code=5xx,pool=web,route=api"]; v != 1 {
		t.Errorf("no-backend row = %v after ForgetBackend, want 1", v)
	}
	// Coming back starts afresh, with a new handle.
	after := m.Backend("web", gone)
	if after == before {
		t.Error("Backend() after ForgetBackend returned the forgotten handle")
	}
	if v := series(t, m, "sluice_outlier_ejections_total")["backend="+gone+",pool=web"]; v != 0 {
		t.Errorf("ejections of a returning backend = %v, want 0", v)
	}
	// A forgotten handle still in use by a request in flight is harmless.
	before.ObserveUpstream(time.Millisecond)
	before.UpstreamError(KindOther)
}

func TestForgetRouteAndPool(t *testing.T) {
	m := New("test")
	touchAll(m)
	m.Requests("api", "web", "").Inc(503)
	m.Requests("", "", "").Inc(404)
	m.Route("static").ObserveDuration(time.Millisecond)
	m.Requests("static", "files", "10.0.1.1:80").Inc(200)
	m.Backend("files", "10.0.1.1:80").SetUp(true)
	m.Pool("files").Retry()

	m.ForgetRoute("api")
	if got := series(t, m, "sluice_request_duration_seconds"); len(got) != 1 || got["route=static"] != 1 {
		t.Errorf("after ForgetRoute(api) durations = %v, want only route=static", got)
	}
	for k := range series(t, m, "sluice_requests_total") {
		if strings.Contains(k, "route=api") {
			t.Errorf("after ForgetRoute(api) sluice_requests_total{%s} still exported", k)
		}
	}

	m.ForgetPool("web")
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatalf("Gather() error = %v", err)
	}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if k := labelKey(mt); strings.Contains(k, "pool=web") {
				t.Errorf("after ForgetPool(web) %s{%s} still exported", mf.GetName(), k)
			}
		}
	}
	if got := series(t, m, "sluice_requests_total"); len(got) != 2*5 {
		t.Errorf("after ForgetPool(web) sluice_requests_total = %v, want the no-route and static rows", got)
	}
	if got := series(t, m, "sluice_backend_up"); len(got) != 1 {
		t.Errorf("after ForgetPool(web) sluice_backend_up = %v, want files' backend only", got)
	}
}

// TestNil checks that a proxy without metrics can call everything.
func TestNil(t *testing.T) {
	var m *Metrics
	m.InFlightAdd(1)
	m.ConnOpened()
	m.ConnClosed()
	m.Bytes(1, 2)
	m.AccessLogDropped()
	m.Reload(true, 1, time.Now())
	m.ForgetBackend("p", "b")
	m.ForgetRoute("r")
	m.ForgetPool("p")
	b := m.Backend("p", "b")
	b.ObserveUpstream(time.Second)
	b.UpstreamError(KindConnect)
	b.SetUp(true)
	b.SetWeight(1)
	b.SetState(StateHealthy)
	b.HealthCheck(true)
	b.Ejected()
	b.SetConnsFunc(func() int { return 0 })
	m.Route("r").ObserveDuration(time.Second)
	m.Requests("r", "p", "b").Inc(200)
	m.Pool("p").Retry()
	m.Pool("p").NoBackend()
}

func TestHandler(t *testing.T) {
	m := New("test")
	touchAll(m)
	srv := httptest.NewServer(m.Handler())
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatalf("GET /metrics error = %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading /metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics status = %d, want 200", resp.StatusCode)
	}
	want := `sluice_requests_total{backend="10.0.0.1:80",code="2xx",pool="web",route="api"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("GET /metrics lacks %q", want)
	}
}

// TestConcurrent runs the request path against the control plane and
// scrapes; its value is under -race.
func TestConcurrent(t *testing.T) {
	m := New("test")
	const workers, perWorker = 8, 1000
	b := m.Backend("web", "10.0.0.1:80")
	b.SetConnsFunc(func() int { return 1 })
	r := m.Route("api")
	rc := m.Requests("api", "web", "10.0.0.1:80")
	p := m.Pool("web")

	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range perWorker {
				m.InFlightAdd(1)
				b.ObserveUpstream(time.Duration(i) * time.Microsecond)
				b.UpstreamError(ErrorKind(i % 4))
				r.ObserveDuration(time.Duration(i) * time.Microsecond)
				rc.Inc(200 + i%4*100)
				p.Retry()
				m.Bytes(i, i)
				m.InFlightAdd(-1)
			}
		})
	}
	stop := make(chan struct{})
	var ctl sync.WaitGroup
	ctl.Go(func() {
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			x := m.Backend("web", "10.0.0.9:80")
			x.SetUp(i%2 == 0)
			x.SetState(State(i % 4))
			x.HealthCheck(i%3 == 0)
			x.SetConnsFunc(func() int { return i })
			m.Requests("api", "web", "10.0.0.9:80").Inc(200)
			m.ForgetBackend("web", "10.0.0.9:80")
			m.Reload(true, uint64(i), time.Now())
		}
	})
	ctl.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := m.Registry().Gather(); err != nil {
				t.Errorf("Gather() error = %v", err)
				return
			}
		}
	})
	wg.Wait()
	close(stop)
	ctl.Wait()

	got := series(t, m, "sluice_requests_total")
	for _, c := range []string{"2xx", "3xx", "4xx", "5xx"} {
		k := "backend=10.0.0.1:80,code=" + c + ",pool=web,route=api"
		if got[k] != workers*perWorker/4 {
			t.Errorf("{%s} = %v, want %v", k, got[k], workers*perWorker/4)
		}
	}
	if v := series(t, m, "sluice_requests_in_flight")[""]; v != 0 {
		t.Errorf("in flight after all ended = %v, want 0", v)
	}
	if v := series(t, m, "sluice_upstream_duration_seconds")["backend=10.0.0.1:80,pool=web"]; v != workers*perWorker {
		t.Errorf("upstream observations = %v, want %v", v, workers*perWorker)
	}
}

func TestBuckets(t *testing.T) {
	m := New("test")
	m.Route("api").ObserveDuration(50 * time.Microsecond)
	m.Route("api").ObserveDuration(45 * time.Second)
	mfs, err := m.Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	want := []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}
	for _, mf := range mfs {
		if mf.GetName() != "sluice_request_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		var got []float64
		for _, b := range h.GetBucket() {
			got = append(got, b.GetUpperBound())
		}
		if !slices.Equal(got, want) {
			t.Errorf("buckets = %v, want %v", got, want)
		}
		// 50 µs lands in the first bucket, 45 s only in +Inf.
		if c := h.GetBucket()[0].GetCumulativeCount(); c != 1 {
			t.Errorf("first bucket count = %d, want 1", c)
		}
		if c := h.GetBucket()[len(want)-1].GetCumulativeCount(); c != 1 || h.GetSampleCount() != 2 {
			t.Errorf("30 s bucket = %d, total = %d; want 1, 2", c, h.GetSampleCount())
		}
		return
	}
	t.Fatal("sluice_request_duration_seconds not gathered")
}
