package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newmanReport is the part of newman's JSON report the test reads.
type newmanReport struct {
	Run struct {
		Stats map[string]struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"stats"`
		Failures []struct {
			Error struct {
				Test    string `json:"test"`
				Message string `json:"message"`
			} `json:"error"`
			Source struct {
				Name string `json:"name"`
			} `json:"source"`
		} `json:"failures"`
	} `json:"run"`
}

// runNewman runs deploy/postman's collection through scripts/newman.sh
// against base and returns newman's report, its output and its exit error.
func runNewman(t *testing.T, base string) (newmanReport, string, error) {
	t.Helper()
	root := repoRoot(t)
	report := filepath.Join(t.TempDir(), "report.json")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "newman.sh"), "run", base,
		"--reporters", "cli,json", "--reporter-json-export", report)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	var rep newmanReport
	b, err := os.ReadFile(report)
	require.NoError(t, err, "newman wrote no report (exit %v):\n%s", runErr, out.String())
	require.NoError(t, json.Unmarshal(b, &rep))
	return rep, out.String(), runErr
}

// TestPostmanCollection runs the Postman collection with newman (installed
// by scripts/newman.sh from the npm registry into .cache/newman) against
// the embedded default, and shows that it fails against a server that is
// not the prober.
func TestPostmanCollection(t *testing.T) {
	if _, err := exec.LookPath("npm"); err != nil {
		t.Skip("npm is not installed: newman, which runs the Postman collection, comes from npm")
	}

	t.Run("passes against the embedded default", func(t *testing.T) {
		a := liveApp(t)
		begin := time.Now()
		rep, out, err := runNewman(t, a.base)
		t.Logf("newman took %.1fs", time.Since(begin).Seconds())
		for _, f := range rep.Run.Failures {
			t.Errorf("%s: %s: %s", f.Source.Name, f.Error.Test, f.Error.Message)
		}
		require.NoError(t, err, "newman:\n%s", out)
		stats := rep.Run.Stats
		assert.GreaterOrEqual(t, stats["requests"].Total, 44, "every request ran")
		assert.GreaterOrEqual(t, stats["assertions"].Total, 200, "every test ran")
		assert.Zero(t, stats["assertions"].Failed)
		assert.Zero(t, stats["testScripts"].Failed, "no test script threw")
		doc := a.config(t)
		assert.Empty(t, doc.Pods, "the collection leaves the cluster as it found it")
		assert.Empty(t, doc.DCs)
	})

	t.Run("fails against a server that is not the prober", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"status":"ready"}`))
		}))
		defer srv.Close()
		rep, out, err := runNewman(t, srv.URL)
		require.Error(t, err, "newman passed against a fake:\n%s", out)
		assert.Greater(t, len(rep.Run.Failures), 40, "nearly every request fails")
	})
}

// repoRoot is the folder of go.mod above the test's working directory.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	require.NoError(t, err)
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		require.NotEqual(t, dir, parent, "no go.mod above the working directory")
		dir = parent
	}
}
