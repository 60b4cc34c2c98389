package images

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strings"
)

// DockerfileConfig is what the final stage of a Dockerfile sets in the
// image configuration, as far as the tests compare it.
type DockerfileConfig struct {
	// From is the final stage's base image.
	From       string
	Entrypoint []string
	Cmd        []string
	User       string
	// ExposedPorts are "<port>/<protocol>" (tcp when the file names none).
	ExposedPorts []string
}

// ParseDockerfile reads the instructions of the final stage that shape the
// image configuration: FROM, ENTRYPOINT, CMD, USER and EXPOSE. Line
// continuations and comments are handled; ENTRYPOINT and CMD must use the
// exec (JSON) form, which is what this repository writes; the shell form
// is an error.
func ParseDockerfile(r io.Reader) (DockerfileConfig, error) {
	var (
		cfg    DockerfileConfig
		cmdSet bool // CMD given in this stage
		line   strings.Builder
		n      int
	)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		n++
		text := strings.TrimSpace(sc.Text())
		if line.Len() == 0 && (text == "" || strings.HasPrefix(text, "#")) {
			continue
		}
		if cont, ok := strings.CutSuffix(text, "\\"); ok {
			line.WriteString(cont + " ")
			continue
		}
		line.WriteString(text)
		instr, args, _ := strings.Cut(strings.TrimSpace(line.String()), " ")
		args = strings.TrimSpace(args)
		line.Reset()
		switch strings.ToUpper(instr) {
		case "FROM":
			// A new stage starts from nothing of the previous one.
			from, _, _ := strings.Cut(args, " ")
			cfg, cmdSet = DockerfileConfig{From: from}, false
		case "ENTRYPOINT", "CMD":
			var v []string
			if err := json.Unmarshal([]byte(args), &v); err != nil {
				return cfg, fmt.Errorf("line %d: %s must use the exec form [\"…\"]: %w", n, instr, err)
			}
			if strings.EqualFold(instr, "ENTRYPOINT") {
				cfg.Entrypoint = v
				// As Docker does: a new entrypoint resets a command not
				// given in this stage (the base image's).
				if !cmdSet {
					cfg.Cmd = nil
				}
			} else {
				cfg.Cmd, cmdSet = v, true
			}
		case "USER":
			cfg.User = args
		case "EXPOSE":
			for _, p := range strings.Fields(args) {
				if !strings.Contains(p, "/") {
					p += "/tcp"
				}
				cfg.ExposedPorts = append(cfg.ExposedPorts, strings.ToLower(p))
			}
		}
	}
	if err := sc.Err(); err != nil {
		return cfg, err
	}
	if line.Len() > 0 {
		return cfg, fmt.Errorf("line %d: the file ends in a line continuation", n)
	}
	if cfg.From == "" {
		return cfg, fmt.Errorf("no FROM instruction")
	}
	return cfg, nil
}
