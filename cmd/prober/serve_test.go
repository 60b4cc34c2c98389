package main

import (
	"bytes"
	"context"
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	appsv1 "k8s.io/api/apps/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"sigs.k8s.io/yaml"

	"github.com/prober-dev/prober/tools/kubetest"
)

// serveOptions returns the options as parsed from args, with $POD_NAME and
// $POD_NAMESPACE set.
func serveOptions(t *testing.T, args ...string) *ServeOptions {
	t.Helper()
	t.Setenv("POD_NAME", "nats-0")
	t.Setenv("POD_NAMESPACE", "nats")
	var o ServeOptions
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.Flags(fs)
	require.NoError(t, fs.Parse(args))
	return &o
}

func TestServeOptionsValidate(t *testing.T) {
	include := "--config-include=/etc/nats-maintenance/jetstream.conf"
	tests := []struct {
		name    string
		args    []string
		wantErr []string
	}{
		{"defaults and the include", []string{include}, nil},
		{"signal reload", []string{include, "--reload=signal", "--nats-pid-file=/var/run/nats/nats.pid"}, nil},
		{"no include", nil, []string{"--config-include is required"}},
		{"relative include", []string{"--config-include=jetstream.conf"}, []string{"absolute path"}},
		{"signal without pid file", []string{include, "--reload=signal"}, []string{"needs --nats-pid-file"}},
		{"unknown reload", []string{include, "--reload=ssh"}, []string{`--reload "ssh"`}},
		{"selector of everything", []string{include, "--selector="}, []string{"selects every pod"}},
		{"bad selector", []string{include, "--selector=app in ("}, []string{"--selector"}},
		{"bad pod name", []string{include, "--pod-name=Nats_0"}, []string{"--pod-name"}},
		{"bad dc label", []string{include, "--dc-label=no spaces"}, []string{"--dc-label"}},
		{"ports", []string{include, "--monitor-port=0", "--client-port=70000", "--gateway-port=-1"},
			[]string{"--monitor-port 0", "--client-port 70000", "--gateway-port -1"}},
		{"gateway port may be 0", []string{include, "--gateway-port=0"}, nil},
		{"everything at once", []string{"--resync=1ms", "--log-format=xml", "--log-level=loud", "--credentials-dir="},
			[]string{"--config-include", "--resync", "--log-format", "--log-level", "--credentials-dir"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := serveOptions(t, tt.args...).Validate()
			if len(tt.wantErr) == 0 {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			for _, want := range tt.wantErr {
				assert.Contains(t, err.Error(), want)
			}
		})
	}

	t.Run("pod and namespace come from the downward API", func(t *testing.T) {
		o := serveOptions(t, include)
		assert.Equal(t, "nats-0", o.Pod)
		assert.Equal(t, "nats", o.Namespace)
		t.Setenv("POD_NAME", "")
		t.Setenv("POD_NAMESPACE", "")
		var bare ServeOptions
		fs := flag.NewFlagSet("serve", flag.ContinueOnError)
		bare.Flags(fs)
		require.NoError(t, fs.Parse([]string{include}))
		err := bare.Validate()
		require.Error(t, err)
		assert.Contains(t, err.Error(), "--pod-name is required")
		assert.Contains(t, err.Error(), "--namespace is required")
	})
}

// TestServeArgsOfTheInstall parses the sidecar's arguments in the shipped
// StatefulSet with the real flags: a renamed or mistyped flag fails here,
// not in a cluster.
func TestServeArgsOfTheInstall(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "deploy", "statefulset.yaml"))
	require.NoError(t, err)
	var sts appsv1.StatefulSet
	require.NoError(t, yaml.UnmarshalStrict(raw, &sts))
	var args []string
	for _, c := range sts.Spec.Template.Spec.InitContainers {
		if c.Name == "prober" {
			args = c.Args
		}
	}
	require.NotEmpty(t, args)
	require.Equal(t, "serve", args[0])

	o := serveOptions(t, args[1:]...)
	require.NoError(t, o.Validate())
	assert.Equal(t, reloadSignal, o.Reload)
	assert.Equal(t, "/etc/nats-maintenance/jetstream.conf", o.ConfigInclude)
	monitor, client := o.config().LocalURLs()
	assert.Equal(t, "http://127.0.0.1:8222", monitor)
	assert.Equal(t, "nats://127.0.0.1:4222", client)
}

func TestMainServeRefusesBadFlags(t *testing.T) {
	t.Setenv("POD_NAME", "")
	t.Setenv("POD_NAMESPACE", "")
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"serve", "--no-such-flag"}, "flag provided but not defined"},
		{[]string{"serve"}, "--pod-name is required"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			assert.Equal(t, 2, Main(tt.args, &stdout, &stderr))
			assert.Contains(t, stderr.String(), tt.want)
		})
	}
}

func TestLoadKubeconfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		require.NoError(t, os.WriteFile(p, []byte(content), 0o600))
		return p
	}
	write("ca.crt", "not checked here")
	write("token", "t0ken")
	const head = "apiVersion: v1\nkind: Config\n"
	tests := []struct {
		name    string
		config  string
		check   func(t *testing.T, host, caFile, token, tokenFile string)
		wantErr string
	}{
		{
			name: "relative paths are relative to the file",
			config: head + `clusters:
- name: c
  cluster: {server: "https://10.0.0.1:6443", certificate-authority: ca.crt}
users:
- name: u
  user: {tokenFile: token}
contexts:
- name: x
  context: {cluster: c, user: u}
current-context: x
`,
			check: func(t *testing.T, host, caFile, token, tokenFile string) {
				assert.Equal(t, "https://10.0.0.1:6443", host)
				assert.Equal(t, filepath.Join(dir, "ca.crt"), caFile)
				assert.Equal(t, filepath.Join(dir, "token"), tokenFile)
			},
		},
		{
			name: "inline token",
			config: head + `clusters:
- {name: c, cluster: {server: "https://h:1", insecure-skip-tls-verify: true}}
users:
- {name: u, user: {token: abc}}
contexts:
- {name: x, context: {cluster: c, user: u}}
current-context: x
`,
			check: func(t *testing.T, host, caFile, token, tokenFile string) {
				assert.Equal(t, "abc", token)
				assert.Empty(t, caFile)
			},
		},
		{name: "no current context", config: head + "clusters: []\n", wantErr: "no configuration has been provided"},
		{name: "unknown context", config: head + "current-context: missing\n", wantErr: "context was not found for specified context: missing"},
		{name: "missing file", config: "", wantErr: "no such file"},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, "missing")
			if tt.config != "" {
				path = write("kubeconfig-"+string(rune('a'+i)), tt.config)
			}
			cfg, err := loadKubeconfig(path)
			if tt.wantErr != "" {
				require.Error(t, err)
				assert.Contains(t, err.Error(), tt.wantErr)
				return
			}
			require.NoError(t, err)
			tt.check(t, cfg.Host, cfg.CAFile, cfg.BearerToken, cfg.BearerTokenFile)
		})
	}

	t.Run("the kubeconfig of a real API server", func(t *testing.T) {
		env := kubetest.Start(t, kubetest.Options{})
		cfg, err := loadKubeconfig(env.Kubeconfig)
		require.NoError(t, err)
		cs, err := kubernetes.NewForConfig(cfg)
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		nss, err := cs.CoreV1().Namespaces().List(ctx, metav1.ListOptions{})
		require.NoError(t, err)
		assert.NotEmpty(t, nss.Items)
	})
}
