package main

import (
	"os"
	"regexp"
	"testing"
)

// TestUpgradeUnitInstancesShareUID: the zero-downtime upgrade of README
// ("Zero-downtime restart and shutdown") runs two instances of
// examples/sluice@.service on one SO_REUSEPORT port, which Linux lets a
// second socket join only under the same effective UID. Found by review.
// What was wrong: the unit set DynamicUser=yes without User=, and systemd
// names each instance's dynamic user after its unit (systemd.exec(5)), so
// sluice@green ran under another UID than sluice@blue and could not bind
// ("address already in use"); examples/upgrade.sh gave up after 10 s. A
// dynamic user needs a fixed name (units naming the same one share its
// UID).
func TestUpgradeUnitInstancesShareUID(t *testing.T) {
	unit, err := os.ReadFile("../../examples/sluice@.service")
	if err != nil {
		t.Fatal(err)
	}
	dynamic := regexp.MustCompile(`(?m)^DynamicUser=(yes|true|on|1)\s*$`).Match(unit)
	user := regexp.MustCompile(`(?m)^User=\S`).Match(unit)
	if dynamic && !user {
		t.Errorf("examples/sluice@.service: DynamicUser=yes without User= runs sluice@blue and sluice@green under two UIDs, which cannot share a SO_REUSEPORT port")
	}
}
