package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/vigil-sensor/vigil/internal/version"
)

func TestVersion(t *testing.T) {
	var out, errOut bytes.Buffer
	if code := run(context.Background(), []string{"--version"}, &out, &errOut); code != 0 || out.String() != "vigil-server "+version.Version+"\n" || errOut.Len() != 0 {
		t.Errorf("--version: exit %d, stdout %q, stderr %q", code, out.String(), errOut.String())
	}
}
