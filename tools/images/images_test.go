package images

import (
	"archive/tar"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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

// entry is one file of a layer as the test reads it back.
type entry struct {
	name       string
	typ        byte
	mode       int64
	uid, gid   int
	mtime      time.Time
	content    string
	compressed bool
}

// layerEntries reads the single layer of img.
func layerEntries(t *testing.T, img v1.Image) []entry {
	t.Helper()
	layers, err := img.Layers()
	require.NoError(t, err)
	require.Len(t, layers, 1)
	mt, err := layers[0].MediaType()
	require.NoError(t, err)
	rc, err := layers[0].Uncompressed()
	require.NoError(t, err)
	defer rc.Close()
	var out []entry
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err)
		b, err := io.ReadAll(tr)
		require.NoError(t, err)
		out = append(out, entry{name: h.Name, typ: h.Typeflag, mode: h.Mode, uid: h.Uid, gid: h.Gid,
			mtime: h.ModTime, content: string(b), compressed: strings.Contains(string(mt), "gzip")})
	}
	return out
}

func TestSpecImage(t *testing.T) {
	src := filepath.Join(t.TempDir(), "bin")
	require.NoError(t, os.WriteFile(src, []byte("#!binary"), 0o700))
	spec := Spec{
		Ref: "kubenode.local/example:v1",
		Files: []File{
			{Path: "/usr/local/bin/tool", Mode: 0o755, Source: src},
			{Path: "/etc/example.conf", Content: []byte("a = 1\n")},
		},
		Dirs:         []Dir{{Path: "/tmp", Mode: 0o1777}},
		Entrypoint:   []string{"/usr/local/bin/tool"},
		Cmd:          []string{"run"},
		User:         "65532:65532",
		ExposedPorts: []string{"8080/tcp"},
		Env:          []string{"PATH=/usr/local/bin"},
	}
	img, err := spec.Image()
	require.NoError(t, err)

	t.Run("one layer: folders, then files, root-owned, at the epoch", func(t *testing.T) {
		got := layerEntries(t, img)
		var names []string
		for _, e := range got {
			names = append(names, e.name)
			assert.Zero(t, e.uid, e.name)
			assert.Zero(t, e.gid, e.name)
			assert.True(t, e.mtime.Equal(time.Unix(0, 0)), "%s has time %s", e.name, e.mtime)
			assert.True(t, e.compressed, "the layer is gzip compressed")
		}
		assert.Equal(t, []string{"etc/", "tmp/", "usr/", "usr/local/", "usr/local/bin/", "etc/example.conf", "usr/local/bin/tool"}, names)
		byName := map[string]entry{}
		for _, e := range got {
			byName[e.name] = e
		}
		assert.Equal(t, int64(0o1777), byName["tmp/"].mode)
		assert.Equal(t, int64(0o755), byName["usr/local/"].mode)
		assert.Equal(t, int64(0o755), byName["usr/local/bin/tool"].mode)
		assert.Equal(t, "#!binary", byName["usr/local/bin/tool"].content)
		assert.Equal(t, int64(0o644), byName["etc/example.conf"].mode)
		assert.Equal(t, byte(tar.TypeDir), byName["etc/"].typ)
	})

	t.Run("configuration", func(t *testing.T) {
		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, "linux", cf.OS)
		assert.NotEmpty(t, cf.Architecture)
		assert.True(t, cf.Created.Equal(time.Unix(0, 0)))
		assert.Equal(t, []string{"/usr/local/bin/tool"}, cf.Config.Entrypoint)
		assert.Equal(t, []string{"run"}, cf.Config.Cmd)
		assert.Equal(t, "65532:65532", cf.Config.User)
		assert.Equal(t, map[string]struct{}{"8080/tcp": {}}, cf.Config.ExposedPorts)
		assert.Equal(t, []string{"PATH=/usr/local/bin"}, cf.Config.Env)
		require.Len(t, cf.RootFS.DiffIDs, 1)
	})

	t.Run("reproducible: the same spec gives the same digest", func(t *testing.T) {
		again, err := spec.Image()
		require.NoError(t, err)
		d1, err := img.Digest()
		require.NoError(t, err)
		d2, err := again.Digest()
		require.NoError(t, err)
		assert.Equal(t, d1, d2)
		changed := spec
		changed.Cmd = []string{"other"}
		other, err := changed.Image()
		require.NoError(t, err)
		d3, err := other.Digest()
		require.NoError(t, err)
		assert.NotEqual(t, d1, d3, "a different configuration is a different image")
	})

	t.Run("archive: readable by reference", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "images.tar")
		require.NoError(t, WriteArchive(path, map[string]v1.Image{spec.Ref: img}))
		tag, err := name.NewTag(spec.Ref)
		require.NoError(t, err)
		back, err := tarball.ImageFromPath(path, &tag)
		require.NoError(t, err)
		d1, err := img.Digest()
		require.NoError(t, err)
		d2, err := back.Digest()
		require.NoError(t, err)
		assert.Equal(t, d1, d2)
	})
}

func TestSpecValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		spec Spec
		want string
	}{
		{"bad reference", Spec{Ref: "Not A Ref", Entrypoint: []string{"/x"}}, "image reference"},
		{"no entrypoint or command", Spec{Ref: "r.local/x:v1"}, "neither an entrypoint nor a command"},
		{"relative file", Spec{Ref: "r.local/x:v1", Entrypoint: []string{"/x"}, Files: []File{{Path: "x"}}}, "not a clean absolute path"},
		{"unclean file", Spec{Ref: "r.local/x:v1", Entrypoint: []string{"/x"}, Files: []File{{Path: "/a/../x"}}}, "not a clean absolute path"},
		{"file twice", Spec{Ref: "r.local/x:v1", Entrypoint: []string{"/x"}, Files: []File{{Path: "/x"}, {Path: "/x"}}}, "given twice"},
		{"bad port", Spec{Ref: "r.local/x:v1", Entrypoint: []string{"/x"}, ExposedPorts: []string{"8080"}}, "exposed port"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.spec.Image()
			require.Error(t, err)
			assert.Contains(t, err.Error(), tt.want)
		})
	}
}

func TestParseDockerfile(t *testing.T) {
	cfg, err := ParseDockerfile(strings.NewReader(`# comment
FROM golang:1.26 AS build
ENTRYPOINT ["/not-this"]
USER 1000
FROM gcr.io/distroless/static-debian12
COPY --from=build /out/x \
     /x
CMD ["serve"]
ENTRYPOINT ["/x"]
EXPOSE 8889 9090/udp
USER 0:0
`))
	require.NoError(t, err)
	assert.Equal(t, DockerfileConfig{
		From: "gcr.io/distroless/static-debian12", Entrypoint: []string{"/x"}, Cmd: []string{"serve"},
		User: "0:0", ExposedPorts: []string{"8889/tcp", "9090/udp"},
	}, cfg)

	_, err = ParseDockerfile(strings.NewReader("FROM x\nENTRYPOINT /bin/sh -c run\n"))
	assert.ErrorContains(t, err, "exec form")
	_, err = ParseDockerfile(strings.NewReader("USER 0\n"))
	assert.ErrorContains(t, err, "no FROM")
	_, err = ParseDockerfile(strings.NewReader("FROM x\nENTRYPOINT [\"/a\"]\nCMD [\"b\"] \\\n"))
	assert.ErrorContains(t, err, "continuation")
}

// TestProberImageAgreesWithDockerfile builds the prober image the real
// node runs and holds its entrypoint, command, user and ports to
// deploy/Dockerfile, which the tests cannot build (no container engine).
// Two builds from the same sources give the same digest.
func TestProberImageAgreesWithDockerfile(t *testing.T) {
	root := repoRoot(t)
	f, err := os.Open(filepath.Join(root, "deploy", "Dockerfile"))
	require.NoError(t, err)
	defer f.Close()
	want, err := ParseDockerfile(f)
	require.NoError(t, err)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	var digests []v1.Hash
	for i := range 2 {
		bin := filepath.Join(t.TempDir(), "prober")
		require.NoError(t, GoBuild(ctx, root, "./cmd/prober", bin))
		img, err := ProberSpec(bin).Image()
		require.NoError(t, err)
		d, err := img.Digest()
		require.NoError(t, err)
		digests = append(digests, d)
		if i > 0 {
			continue
		}
		cf, err := img.ConfigFile()
		require.NoError(t, err)
		assert.Equal(t, want.Entrypoint, cf.Config.Entrypoint, "entrypoint")
		assert.Equal(t, want.Cmd, cf.Config.Cmd, "command")
		assert.Equal(t, want.User, cf.Config.User, "user")
		var ports []string
		for p := range cf.Config.ExposedPorts {
			ports = append(ports, p)
		}
		slices.Sort(ports)
		assert.Equal(t, want.ExposedPorts, ports, "ports")
		// The binary at the entrypoint is a static executable.
		var found bool
		for _, e := range layerEntries(t, img) {
			if "/"+e.name == want.Entrypoint[0] {
				found = true
				assert.Equal(t, int64(0o755), e.mode)
				assert.True(t, strings.HasPrefix(e.content, "\x7fELF"), "an ELF binary")
			}
		}
		assert.True(t, found, "the entrypoint %s is in the image", want.Entrypoint[0])
	}
	assert.Equal(t, digests[0], digests[1], "two builds from the same sources give the same image")
}

// TestNATSImage builds the NATS server from the main module's
// requirements: the image runs the version the embedded default runs.
func TestNATSImage(t *testing.T) {
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	version, err := ModuleVersion(ctx, root, natsModule)
	require.NoError(t, err)
	assert.True(t, strings.HasPrefix(version, "v2."), version)
	bin := filepath.Join(t.TempDir(), "nats-server")
	require.NoError(t, GoBuild(ctx, root, natsModule, bin))
	out, err := exec.CommandContext(ctx, bin, "--version").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), strings.TrimPrefix(version, "v"), "nats-server --version")

	img, err := NATSSpec(bin, version).Image()
	require.NoError(t, err)
	cf, err := img.ConfigFile()
	require.NoError(t, err)
	assert.Equal(t, []string{"/usr/local/bin/nats-server"}, cf.Config.Entrypoint)
	assert.Equal(t, map[string]struct{}{"4222/tcp": {}, "6222/tcp": {}, "8222/tcp": {}}, cf.Config.ExposedPorts)
	assert.Contains(t, cf.Config.Env, "PATH=/usr/local/bin:/usr/bin:/bin", "nats-server is on PATH for preStop hooks")
	assert.Equal(t, NATSRepo+":"+version, NATSSpec(bin, version).Ref)
}
