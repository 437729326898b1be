package kernel

import (
	"strings"
	"testing"
)

func TestParseDepends(t *testing.T) {
	tests := []struct{ name, out, want, wantErr string }{
		{"Debian 12", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64", ""},
		{"alternatives and other deps", "linux-image-amd64\n  Depends: kmod\n |Depends: <linux-image-6.12.9-amd64>\n  Depends: linux-image-6.12.8-amd64\n", "linux-image-6.12.9-amd64", ""},
		{"none", "linux-image-amd64\n  Depends: kmod\n", "", "no dependency named linux-image-*"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseDepends(tt.out, "linux-image-")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("parseDepends = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestParseShow(t *testing.T) {
	out := `Package: linux-image-6.1.0-56-amd64
Source: linux-signed-amd64 (6.1.192+2)
Version: 6.1.192-2
Architecture: amd64
Depends: kmod, linux-base (>= 4.3~)
Filename: pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb
Size: 70550672
SHA256: A86E2049672F52354C4536A089203B6C82639420424D31C91CF31A181FD4D8F1
Description-en: Linux 6.1 for 64-bit PCs (signed)

`
	p, err := parseShow(out)
	if err != nil {
		t.Fatal(err)
	}
	want := aptPackage{
		Version:  "6.1.192-2",
		Filename: "pool/updates/main/l/linux-signed-amd64/linux-image-6.1.0-56-amd64_6.1.192-2_amd64.deb",
		SHA256:   "a86e2049672f52354c4536a089203b6c82639420424d31c91cf31a181fd4d8f1",
		Size:     70550672,
	}
	if p != want {
		t.Errorf("parseShow = %+v, want %+v", p, want)
	}
	if _, err := parseShow("Package: x\nVersion: 1\n"); err == nil {
		t.Error("parseShow accepted a stanza without Filename and SHA256")
	}
}
