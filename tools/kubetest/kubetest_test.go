package kubetest

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestEnv(t *testing.T) {
	e := Start(t, Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cs, err := e.Clientset()
	require.NoError(t, err)

	t.Run("serves the pinned version", func(t *testing.T) {
		v, err := cs.Discovery().ServerVersion()
		require.NoError(t, err)
		assert.Equal(t, "v1.37.1", v.GitVersion)
	})
	t.Run("kubectl works with the kubeconfig", func(t *testing.T) {
		_, err := cs.CoreV1().ConfigMaps("default").Create(ctx, &corev1.ConfigMap{
			ObjectMeta: metav1.ObjectMeta{Name: "probe"},
			Data:       map[string]string{"k": "v"},
		}, metav1.CreateOptions{})
		require.NoError(t, err)
		out, err := e.Kubectl(ctx, "get", "configmap", "probe", "-o", "jsonpath={.data.k}")
		require.NoError(t, err, "%s", out)
		assert.Equal(t, "v", string(out))
	})
	t.Run("a wrong token is refused", func(t *testing.T) {
		client, err := e.httpClient()
		require.NoError(t, err)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, e.Host+"/api/v1/namespaces/default/configmaps", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer wrong")
		resp, err := client.Do(req)
		require.NoError(t, err)
		_ = resp.Body.Close()
		assert.Equal(t, http.StatusUnauthorized, resp.StatusCode)
	})
	t.Run("the API server can be stopped and started again", func(t *testing.T) {
		require.NoError(t, e.StopAPIServer())
		_, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "probe", metav1.GetOptions{})
		require.Error(t, err)
		require.NoError(t, e.StartAPIServer(ctx))
		cm, err := cs.CoreV1().ConfigMaps("default").Get(ctx, "probe", metav1.GetOptions{})
		require.NoError(t, err, "data survives in etcd")
		assert.Equal(t, "v", cm.Data["k"])
	})

	dir := e.Dir
	require.NoError(t, e.Close())
	_, err = os.Stat(dir)
	assert.True(t, os.IsNotExist(err), "Close removes %s", dir)
}

func TestNewFailsClearly(t *testing.T) {
	bin := t.TempDir()
	for _, name := range []string{"etcd", "kube-apiserver", "kubectl"} {
		require.NoError(t, os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\necho broken >&2\nexit 3\n"), 0o755))
	}
	_, err := New(context.Background(), bin, Options{ReadyTimeout: 20 * time.Second})
	require.Error(t, err)
	assert.True(t, strings.Contains(err.Error(), "etcd exited early") && strings.Contains(err.Error(), "broken"), "%v", err)
}
