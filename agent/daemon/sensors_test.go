package daemon

import (
	"testing"

	"github.com/vigil-sensor/vigil/agent/config"
	"github.com/vigil-sensor/vigil/agent/sensor/file"
)

func TestEveryConfigFileEventMapsToKinds(t *testing.T) {
	var all file.Kind
	for _, name := range config.FileEvents {
		k := fileKinds([]string{name})
		if k == 0 {
			t.Errorf("config event %q maps to no file kind", name)
		}
		if all&k != 0 {
			t.Errorf("config event %q overlaps another", name)
		}
		all |= k
	}
	if all != file.KindAll {
		t.Errorf("config events cover kinds %#x, the file family has %#x", all, file.KindAll)
	}
	if got := fileKinds([]string{"open", "setid"}); got != file.KindOpen|file.KindCred {
		t.Errorf("open+setid = %#x", got)
	}
}
