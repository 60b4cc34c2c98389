package images

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// The images of the real node. They live only in the node's containerd,
// imported from the archive Build writes, so they carry a registry name
// nobody serves and tags that are not "latest" (which would make the
// kubelet pull).
const (
	Registry = "kubenode.local"
	// ProberRef is the prober, as deploy/Dockerfile builds it.
	ProberRef = Registry + "/prober:dev"
	// NATSRepo is the NATS server; its tag is the version of
	// github.com/nats-io/nats-server/v2 in the main go.mod, the server the
	// embedded default runs.
	NATSRepo = Registry + "/nats-server"
	// PauseRef is every pod's sandbox (containerd's sandbox_image).
	PauseRef = Registry + "/pause:3.10"
	// ClientRef is the tests' client pod (tools/kubenode/podclient).
	ClientRef = Registry + "/podclient:dev"
)

// natsModule is the module of the NATS server, built from the main
// module's requirements.
const natsModule = "github.com/nats-io/nats-server/v2"

// ProberSpec is the prober image: the same entrypoint, command, user and
// port as deploy/Dockerfile (a test holds the two together), the binary at
// /prober.
func ProberSpec(bin string) Spec {
	return Spec{
		Ref:          ProberRef,
		Files:        []File{{Path: "/prober", Mode: 0o755, Source: bin}},
		Dirs:         []Dir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint:   []string{"/prober"},
		Cmd:          []string{"serve"},
		User:         "0:0",
		ExposedPorts: []string{"8889/tcp"},
	}
}

// NATSSpec is the NATS server image: the binary at
// /usr/local/bin/nats-server (on PATH, as in the official images, so that
// `nats-server --signal` works in preStop hooks), the official image's
// ports, and its entrypoint, so that args alone ("--config", …) configure
// it.
func NATSSpec(bin, version string) Spec {
	return Spec{
		Ref:          NATSRepo + ":" + version,
		Files:        []File{{Path: "/usr/local/bin/nats-server", Mode: 0o755, Source: bin}},
		Dirs:         []Dir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint:   []string{"/usr/local/bin/nats-server"},
		User:         "0:0",
		Env:          []string{"PATH=/usr/local/bin:/usr/bin:/bin"},
		ExposedPorts: []string{"4222/tcp", "6222/tcp", "8222/tcp"},
	}
}

// PauseSpec is the sandbox image.
func PauseSpec(bin string) Spec {
	return Spec{
		Ref:        PauseRef,
		Files:      []File{{Path: "/pause", Mode: 0o755, Source: bin}},
		Entrypoint: []string{"/pause"},
		User:       "65535:65535",
	}
}

// ClientSpec is the tests' client pod image.
func ClientSpec(bin string) Spec {
	return Spec{
		Ref:        ClientRef,
		Files:      []File{{Path: "/podclient", Mode: 0o755, Source: bin}},
		Dirs:       []Dir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint: []string{"/podclient"},
		Cmd:        []string{"idle"},
		User:       "0:0",
	}
}

// Options configures Build.
type Options struct {
	// RepoRoot is the folder of the main module's go.mod.
	RepoRoot string
	// Dir receives the binaries and the archive.
	Dir string
	// Logf reports progress; nil means silence.
	Logf func(format string, args ...any)
}

// Set is a built set of images.
type Set struct {
	// Archive is the docker-archive holding every image.
	Archive string
	// NATSVersion is the nats-server module version of the main go.mod.
	NATSVersion string
	// Refs are the image references, by short name: prober, nats-server,
	// pause, podclient.
	Refs map[string]string
	// Digests are the image digests, by short name.
	Digests map[string]string
	// Took is how long Build took.
	Took time.Duration
}

// Build compiles the four binaries from the main module (CGO off, paths
// trimmed, no VCS stamp: the same sources give the same bytes) and writes
// their images into one archive in o.Dir.
func Build(ctx context.Context, o Options) (*Set, error) {
	begin := time.Now()
	logf := o.Logf
	if logf == nil {
		logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	version, err := ModuleVersion(ctx, o.RepoRoot, natsModule)
	if err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	bins := []struct{ short, pkg string }{
		{"prober", "./cmd/prober"},
		{"nats-server", natsModule},
		{"pause", "./tools/images/pause"},
		{"podclient", "./tools/kubenode/podclient"},
	}
	for _, b := range bins {
		if err := GoBuild(ctx, o.RepoRoot, b.pkg, filepath.Join(o.Dir, b.short)); err != nil {
			return nil, fmt.Errorf("build images: %w", err)
		}
		logf("images: built %s", b.pkg)
	}
	specs := map[string]Spec{
		"prober":      ProberSpec(filepath.Join(o.Dir, "prober")),
		"nats-server": NATSSpec(filepath.Join(o.Dir, "nats-server"), version),
		"pause":       PauseSpec(filepath.Join(o.Dir, "pause")),
		"podclient":   ClientSpec(filepath.Join(o.Dir, "podclient")),
	}
	set := &Set{
		Archive:     filepath.Join(o.Dir, "images.tar"),
		NATSVersion: version,
		Refs:        map[string]string{},
		Digests:     map[string]string{},
	}
	imgs := map[string]v1.Image{}
	for short, spec := range specs {
		img, err := spec.Image()
		if err != nil {
			return nil, fmt.Errorf("build images: %w", err)
		}
		d, err := img.Digest()
		if err != nil {
			return nil, fmt.Errorf("build images: %s: %w", spec.Ref, err)
		}
		imgs[spec.Ref] = img
		set.Refs[short] = spec.Ref
		set.Digests[short] = d.String()
	}
	if err := WriteArchive(set.Archive, imgs); err != nil {
		return nil, fmt.Errorf("build images: %w", err)
	}
	set.Took = time.Since(begin)
	logf("images: wrote %s in %.1fs", set.Archive, set.Took.Seconds())
	return set, nil
}

// GoBuild builds the package pkg (a path relative to dir, or an import
// path of dir's module's build list) into the static binary out:
// CGO_ENABLED=0, -trimpath, no VCS stamp, no symbol table, at a lower CPU
// priority.
func GoBuild(ctx context.Context, dir, pkg, out string) error {
	args := []string{"build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, pkg}
	cmd := goCommand(ctx, dir, args...)
	cmd.Env = append(cmd.Env, "CGO_ENABLED=0", "GOOS=linux")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("go build %s: %w: %s", pkg, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}

// ModuleVersion returns the version of module mod in the build list of the
// module at dir.
func ModuleVersion(ctx context.Context, dir, mod string) (string, error) {
	cmd := goCommand(ctx, dir, "list", "-m", "-f", "{{.Version}}", mod)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("go list -m %s: %w: %s", mod, err, strings.TrimSpace(stderr.String()))
	}
	v := strings.TrimSpace(string(out))
	if v == "" {
		return "", fmt.Errorf("go list -m %s: no version", mod)
	}
	return v, nil
}

// goCommand runs the go command (the toolchain the caller runs with when it
// can be found, else "go" on PATH) at nice 10 in dir, with GOFLAGS cleared
// so that the caller's flags (-race, say) do not leak into the build.
func goCommand(ctx context.Context, dir string, args ...string) *exec.Cmd {
	goBin := "go"
	if root := os.Getenv("GOROOT"); root != "" {
		if p := filepath.Join(root, "bin", "go"); isExecutable(p) {
			goBin = p
		}
	}
	var cmd *exec.Cmd
	if nice, err := exec.LookPath("nice"); err == nil {
		cmd = exec.CommandContext(ctx, nice, append([]string{"-n", "10", goBin}, args...)...)
	} else {
		cmd = exec.CommandContext(ctx, goBin, args...)
	}
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=readonly", "GOWORK=off")
	return cmd
}

func isExecutable(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0
}
