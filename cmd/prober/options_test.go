package main

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEmbeddedOptions(t *testing.T) {
	parse := func(t *testing.T, args ...string) *EmbeddedOptions {
		var o EmbeddedOptions
		fs := flag.NewFlagSet("test", flag.ContinueOnError)
		o.Flags(fs)
		require.NoError(t, fs.Parse(args))
		return &o
	}
	t.Run("defaults are valid", func(t *testing.T) {
		o := parse(t)
		require.NoError(t, o.Validate())
		require.NoError(t, o.Complete(&bytes.Buffer{}))
		assert.Equal(t, []int{3}, o.topology)
		assert.Nil(t, o.auth.Authenticator, "no token file: loopback only")
	})
	t.Run("all errors at once", func(t *testing.T) {
		o := parse(t, "--topology", "2,x", "--client-port", "-1", "--resync", "1ms", "--log-format", "xml", "--log-level", "loud")
		err := o.Validate()
		require.Error(t, err)
		for _, want := range []string{"--topology", "--client-port", "--resync", "--log-format", "--log-level"} {
			assert.Contains(t, err.Error(), want)
		}
	})
	t.Run("topology", func(t *testing.T) {
		o := parse(t, "--topology", "2, 2,2")
		require.NoError(t, o.Validate())
		require.NoError(t, o.Complete(&bytes.Buffer{}))
		assert.Equal(t, []int{2, 2, 2}, o.topology)
	})
	t.Run("token file", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "tokens")
		require.NoError(t, os.WriteFile(path, []byte("0123456789abcdef0123,alice\n"), 0o600))
		o := parse(t, "--token-file", path)
		require.NoError(t, o.Complete(&bytes.Buffer{}))
		require.NotNil(t, o.auth.Authenticator)
		u, ok, err := o.auth.Authenticator.Authenticate(t.Context(), "0123456789abcdef0123")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, "alice", u.Name)
	})
	t.Run("unreadable token file", func(t *testing.T) {
		o := parse(t, "--token-file", filepath.Join(t.TempDir(), "missing"))
		err := o.Complete(&bytes.Buffer{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "--token-file")
	})
}
