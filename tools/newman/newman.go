// Package newman runs the project's Postman collection (deploy/postman)
// with newman, through scripts/newman.sh, which installs newman from npm
// when it is missing. The tests that run the collection against the
// embedded default and against a real node share it.
package newman

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Collection is the collection's path below the repository's root.
var Collection = filepath.Join("deploy", "postman", "prober.postman_collection.json")

// Report is the part of newman's JSON report the tests read.
type Report struct {
	Run struct {
		Stats map[string]struct {
			Total  int `json:"total"`
			Failed int `json:"failed"`
		} `json:"stats"`
		Failures []Failure `json:"failures"`
	} `json:"run"`
}

// Failure is one failed assertion or request of a run.
type Failure struct {
	Error struct {
		Test    string `json:"test"`
		Message string `json:"message"`
	} `json:"error"`
	Source struct {
		Name string `json:"name"`
	} `json:"source"`
}

// Result is what a run left: newman's report, its output, and its exit
// error (nil when every request and assertion passed).
type Result struct {
	Report Report
	Output string
	Exit   error
}

// Run runs the collection of the repository at root against base, with
// newman's report written in dir. err is set when newman left no readable
// report; a run that fails is a Result with Exit set.
func Run(ctx context.Context, root, base, dir string) (Result, error) {
	report := filepath.Join(dir, "newman-report.json")
	cmd := exec.CommandContext(ctx, "bash", filepath.Join(root, "scripts", "newman.sh"), "run", base,
		"--reporters", "cli,json", "--reporter-json-export", report)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	res := Result{Exit: cmd.Run()}
	res.Output = out.String()
	b, err := os.ReadFile(report)
	if err != nil {
		return res, fmt.Errorf("newman wrote no report (exit %v): %w", res.Exit, err)
	}
	if err := json.Unmarshal(b, &res.Report); err != nil {
		return res, fmt.Errorf("newman's report: %w", err)
	}
	return res, nil
}

// Requests counts the requests of the collection of the repository at
// root, folders included: a run makes at least that many.
func Requests(root string) (int, error) {
	b, err := os.ReadFile(filepath.Join(root, Collection))
	if err != nil {
		return 0, err
	}
	var top struct {
		Item []json.RawMessage `json:"item"`
	}
	if err := json.Unmarshal(b, &top); err != nil {
		return 0, fmt.Errorf("%s: %w", Collection, err)
	}
	return count(top.Item)
}

func count(items []json.RawMessage) (int, error) {
	n := 0
	for _, raw := range items {
		var it struct {
			Item    []json.RawMessage `json:"item"`
			Request json.RawMessage   `json:"request"`
		}
		if err := json.Unmarshal(raw, &it); err != nil {
			return 0, fmt.Errorf("%s: an item: %w", Collection, err)
		}
		if it.Request != nil {
			n++
		}
		sub, err := count(it.Item)
		if err != nil {
			return 0, err
		}
		n += sub
	}
	return n, nil
}
