package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"path/filepath"
	"strings"
	"testing"

	"github.com/joeyrt/joey/internal/hostcheck"
)

func TestCheckCommand(t *testing.T) {
	noImage := filepath.Join(t.TempDir(), "none")
	tests := []struct {
		name     string
		args     []string
		wantErr  func(error) bool
		inStdout string
		inStderr string
	}{
		{
			name:     "table exits 1 without an image",
			args:     []string{"--image", noImage},
			wantErr:  isExit(1),
			inStdout: "no guest image at " + noImage,
		},
		{
			name:     "JSON exits 1 without an image",
			args:     []string{"--json", "--image", noImage},
			wantErr:  isExit(1),
			inStdout: `"schema": 1`,
		},
		{
			name:     "stray argument is refused",
			args:     []string{"now"},
			wantErr:  func(err error) bool { return err != nil && strings.Contains(err.Error(), `unexpected argument "now"`) },
			inStderr: "usage: joey check",
		},
		{
			name:     "help prints usage",
			args:     []string{"-h"},
			wantErr:  func(err error) bool { return errors.Is(err, flag.ErrHelp) },
			inStderr: "-image",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			err := runCheck(context.Background(), tt.args, &stdout, &stderr)
			if !tt.wantErr(err) {
				t.Fatalf("unexpected error %v", err)
			}
			if !strings.Contains(stdout.String(), tt.inStdout) || !strings.Contains(stderr.String(), tt.inStderr) {
				t.Fatalf("stdout:\n%s\nstderr:\n%s\nwant %q and %q in them", stdout.String(), stderr.String(), tt.inStdout, tt.inStderr)
			}
		})
	}
}

func TestCheckJSONDecodesToTheReport(t *testing.T) {
	var stdout bytes.Buffer
	err := runCheck(context.Background(), []string{"--json", "--image", t.TempDir()}, &stdout, &bytes.Buffer{})
	if !isExit(1)(err) {
		t.Fatalf("err = %v, want exit status 1 (the image directory is empty)", err)
	}
	var r hostcheck.Report
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		t.Fatalf("output is not a Report: %v\n%s", err, stdout.String())
	}
	c, ok := r.Check("image")
	if r.OK || !ok || c.Status != hostcheck.Missing {
		t.Fatalf("OK=%v image=%+v, want not OK and the image missing", r.OK, c)
	}
}

func isExit(code int) func(error) bool {
	return func(err error) bool {
		var ee exitError
		return errors.As(err, &ee) && ee.code == code
	}
}
