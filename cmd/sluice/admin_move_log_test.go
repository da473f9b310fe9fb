package main

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestAdminListenerMoveLogged: a reload that moves admin.listen, or turns
// it off, says so in the log, as a moved proxy listener does; the new
// address serves and the old one does not.
func TestAdminListenerMoveLogged(t *testing.T) {
	up := startElasticBackend(t, "127.0.0.1:0")
	listen, admin1, admin2 := freePort(t), freePort(t), freePort(t)
	render := func(admin string) string {
		return fmt.Sprintf("listen: %s\nadmin: {listen: %q}\nwatch_config: false\nlog: {format: json}\nroutes: [{pool: p}]\npools: {p: {backends: [{address: %s}]}}\n",
			listen, admin, up.addr)
	}
	path := writeConfig(t, render(admin1))
	stderr := &syncBuffer{}
	runInProcessLog(t, path, stderr)
	waitReady(t, "http://"+admin1+"/readyz")

	replaceFile(t, path, render(admin2))
	if code, body := adminReload(t, admin1); code != 200 {
		t.Fatalf("reload = %d %s", code, body)
	}
	waitReady(t, "http://"+admin2+"/readyz")
	waitUntil(t, "the move logged", 5*time.Second, func() bool {
		return strings.Contains(stderr.String(), `"listen":"`+admin2+`","previous":"`+admin1+`","time"`) &&
			strings.Contains(stderr.String(), `"message":"admin listener moved"`)
	})

	replaceFile(t, path, render(""))
	adminReload(t, admin2)
	waitUntil(t, "the close logged", 5*time.Second, func() bool {
		return strings.Contains(stderr.String(), `"previous":"`+admin2+`"`) &&
			strings.Contains(stderr.String(), `"message":"admin listener closed"`)
	})
}
