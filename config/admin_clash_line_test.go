package config

import (
	"strings"
	"testing"
)

// Found by review. What was wrong: README (Configuration reference) says every error is reported
// "with file, line and field path". A file that sets listen to the
// default admin port (127.0.0.1:9901) and leaves admin.listen out is
// refused with "sluice.yaml: admin.listen: 127.0.0.1:9901 takes the port
// of listen ..." and no line at all: validate.go fails the path
// admin.listen, which is not in the file, so Config.Line finds nothing
// (0) and FieldError prints no line. The user wrote one of the two
// clashing values, listen on line 5, and is sent to a field they never
// wrote, without a place. Expected: the error placed at a line of the
// file, listen's when admin.listen is not written (fall back to
// c.Line("listen") in that check).
func TestAdminClashWithDefaultHasLine(t *testing.T) {
	_, err := Parse("sluice.yaml", []byte(refBase+"listen: 127.0.0.1:9901\n"))
	if err == nil {
		t.Fatal("Parse() accepted listen on the default admin port, want an error")
	}
	errs, ok := err.(Errors)
	if !ok {
		t.Fatalf("Parse() error type %T, want Errors", err)
	}
	for _, e := range errs {
		if !strings.Contains(e.Msg, "takes the port of listen") {
			continue
		}
		if e.Line != 5 {
			t.Errorf("error %q has line %d, want 5 (listen's, the only one of the two in the file)", e, e.Line)
		}
		return
	}
	t.Fatalf("Parse() error =\n%v\nwant the admin.listen clash", err)
}
