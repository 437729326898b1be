package persist

import (
	"reflect"
	"strings"
	"testing"
)

func TestMountsUnder(t *testing.T) {
	const table = `22 1 0:21 / /run rw,nosuid shared:5 - tmpfs tmpfs rw
30 22 0:30 / /run/joey/default/sb rw - tmpfs tmpfs rw
31 30 0:31 / /run/joey/default/sb/shared/c1 rw - overlay overlay rw
32 22 0:32 / /run/joey/default/sb2 rw - tmpfs tmpfs rw
33 22 0:33 / /run/joey/default/sb\040x/rootfs rw - tmpfs tmpfs rw
34 22 0:34 / /run/joey/default/sbx rw - tmpfs tmpfs rw
`
	tests := []struct {
		dir  string
		want []string
	}{
		{"/run/joey/default/sb", []string{"/run/joey/default/sb", "/run/joey/default/sb/shared/c1"}},
		{"/run/joey/default/sb x", []string{"/run/joey/default/sb x/rootfs"}},
		{"/run/joey/default/none", nil},
	}
	for _, tt := range tests {
		got, err := mountsUnder(strings.NewReader(table), tt.dir)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, tt.want) {
			t.Errorf("mountsUnder(%q) = %q, want %q", tt.dir, got, tt.want)
		}
	}
}

func TestUnescapeOctal(t *testing.T) {
	tests := map[string]string{
		`/a\040b`:       "/a b",
		`/a\011\012`:    "/a\t\n",
		`/a\134b`:       `/a\b`,
		`/plain`:        "/plain",
		`/short\04`:     `/short\04`,
		`/not\999octal`: `/not\999octal`,
	}
	for in, want := range tests {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMountsUnderRejectsMalformedLines(t *testing.T) {
	if _, err := mountsUnder(strings.NewReader("1 2 3\n"), "/x"); err == nil {
		t.Error("no error for a line with too few fields")
	}
}
