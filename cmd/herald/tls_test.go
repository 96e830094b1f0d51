package main_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/gorilla/websocket"
	"github.com/stretchr/testify/require"

	"github.com/heraldhq/herald/internal/heraldtest"
)

// writeCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files, and returns the certificate.
func writeCert(t *testing.T, certFile, keyFile string, serial int64) *x509.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	require.NoError(t, err)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: "herald test"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	require.NoError(t, err)
	keyDER, err := x509.MarshalECPrivateKey(key)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600))
	require.NoError(t, os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600))
	cert, err := x509.ParseCertificate(der)
	require.NoError(t, err)
	return cert
}

// served returns the serial of the certificate herald presents.
func served(t *testing.T, addr string) int64 {
	t.Helper()
	conn, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true}) // only reading which certificate is served
	require.NoError(t, err)
	defer conn.Close()
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.Int64()
}

// writeTLSConfig writes dir/herald.hcl serving TLS with dir's cert.pem and
// key.pem, named relative to the file (they are read from its directory),
// on a free address, with extra HCL after it; it returns the file and the
// address.
func writeTLSConfig(t *testing.T, dir, extra string) (string, string) {
	t.Helper()
	addr := heraldtest.FreeAddr(t)
	cfg := filepath.Join(dir, "herald.hcl")
	require.NoError(t, os.WriteFile(cfg, []byte(fmt.Sprintf(`server {
  listen = %q
  tls {
    cert_file = "cert.pem"
    key_file  = "key.pem"
  }
}
auth {
  token_secret = %q
  api_keys     = [%q]
}
`, addr, heraldtest.Secret, heraldtest.APIKey)+extra), 0o600))
	return cfg, addr
}

// With server.tls, herald serves wss and https; SIGHUP reads the
// certificate files again, so a renewed certificate is served without a
// restart and without dropping the connections already open.
func TestTLSListenerAndCertificateReload(t *testing.T) {
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	first := writeCert(t, certFile, keyFile, 1)
	cfg, addr := writeTLSConfig(t, dir, "")
	h := heraldtest.StartWithConfig(t, cfg, nil)

	pool := x509.NewCertPool()
	pool.AddCert(first)
	dialer := websocket.Dialer{TLSClientConfig: &tls.Config{RootCAs: pool}, HandshakeTimeout: heraldtest.Timeout}
	ws, _, err := dialer.Dial("wss://"+addr+"/ws?token="+h.Token(t, "alice"), nil)
	require.NoError(t, err)
	defer ws.Close()
	require.NoError(t, ws.WriteJSON(map[string]any{"jsonrpc": "2.0", "id": 1, "method": "subscribe", "params": map[string]any{"channel": "news"}}))
	var reply map[string]any
	require.NoError(t, ws.ReadJSON(&reply))
	require.Contains(t, reply, "result")

	https := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}, Timeout: heraldtest.Timeout}
	publish := func(client *http.Client) {
		req, err := http.NewRequest(http.MethodPost, "https://"+addr+"/v1/publish", bytes.NewReader([]byte(`{"channel":"news","event":"new","object_type":"message","object":{"n":1}}`)))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+heraldtest.APIKey)
		resp, err := client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, 200, resp.StatusCode)
	}
	publish(https)
	var frame struct {
		Method string
		Params struct{ Notifications []json.RawMessage }
	}
	require.NoError(t, ws.SetReadDeadline(time.Now().Add(heraldtest.Timeout)))
	require.NoError(t, ws.ReadJSON(&frame))
	require.Equal(t, "onNotificationReceived", frame.Method)
	require.Len(t, frame.Params.Notifications, 1)

	// Plain HTTP is not served on a TLS listener.
	if resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + addr + "/healthz"); err == nil {
		resp.Body.Close()
		require.Equal(t, http.StatusBadRequest, resp.StatusCode, "plain HTTP on the TLS port")
	}

	// Renew the certificate in place and SIGHUP: new handshakes get it.
	require.Equal(t, int64(1), served(t, addr))
	second := writeCert(t, certFile, keyFile, 2)
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "server.tls (certificate read again)", heraldtest.Timeout)
	require.Equal(t, int64(2), served(t, addr))
	pool2 := x509.NewCertPool()
	pool2.AddCert(second)
	publish(&http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool2}}, Timeout: heraldtest.Timeout})
	require.NoError(t, ws.ReadJSON(&frame), "the connection opened before the reload stays")
}

// SIGHUP applies allowed_origins at once, and names each changed key that
// needs a restart rather than ignoring it silently.
func TestReloadAppliesOriginsAndNamesWhatNeedsARestart(t *testing.T) {
	addr := heraldtest.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "herald.hcl")
	config := func(origin string, historySize int) {
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`server {
  listen          = %q
  allowed_origins = [%q]
}
auth {
  token_secret = %q
  api_keys     = [%q]
}
history {
  size = %d
}
`, addr, origin, heraldtest.Secret, heraldtest.APIKey, historySize)), 0o600))
	}
	config("http://a.example", 1000)
	h := heraldtest.StartWithConfig(t, path, nil)
	dial := func() (int, error) {
		_, resp, err := heraldtest.DialURL(h.WSURL+"?token="+h.Token(t, "alice"), http.Header{"Origin": {"http://b.example"}})
		if resp != nil {
			return resp.StatusCode, err
		}
		return 0, err
	}
	status, err := dial()
	require.Error(t, err)
	require.Equal(t, http.StatusForbidden, status)
	h.WaitLog(t, "refused a WebSocket from an origin that is not allowed", heraldtest.Timeout)

	config("http://b.example", 500)
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "take effect only after a restart", heraldtest.Timeout)
	require.Contains(t, h.Logs(), "history.size")
	h.WaitLog(t, "server.allowed_origins", heraldtest.Timeout)
	status, err = dial()
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, status)
}

// SIGHUP applies auth secrets, API keys and limits without dropping the
// connections already open: the old key and tokens signed with the old
// secret are refused from then on, the new ones accepted, and a new
// connection gets the new limits.
func TestReloadAppliesAuthAndLimits(t *testing.T) {
	addr := heraldtest.FreeAddr(t)
	path := filepath.Join(t.TempDir(), "herald.hcl")
	write := func(secret, key string, maxSubs, maxBatch int) {
		require.NoError(t, os.WriteFile(path, []byte(fmt.Sprintf(`server {
  listen = %q
}
auth {
  token_secret = %q
  api_keys     = [%q]
}
limits {
  max_subscriptions = %d
}
delivery {
  max_batch = %d
  max_delay = "1s"
}
`, addr, secret, key, maxSubs, maxBatch)), 0o600))
	}
	mint := func(secret string) string {
		tok, err := jwt.NewWithClaims(jwt.SigningMethodHS256, jwt.MapClaims{"sub": "alice", "exp": time.Now().Add(time.Hour).Unix()}).SignedString([]byte(secret))
		require.NoError(t, err)
		return tok
	}
	write("old-secret", "old-key", 3, 128)
	h := heraldtest.StartWithConfig(t, path, nil)
	before := h.Dial(t, mint("old-secret"))
	before.Subscribe(t, "a", "b", "c")

	write("new-secret", "new-key", 1, 2)
	h.Signal(t, syscall.SIGHUP)
	h.WaitLog(t, "auth.api_keys", heraldtest.Timeout)

	status, _ := h.Do(t, http.MethodPost, "/v1/publish", heraldtest.N("a", "e", "t", `{}`), "old-key", nil)
	require.Equal(t, http.StatusUnauthorized, status)
	status, body := h.Do(t, http.MethodPost, "/v1/publish", heraldtest.N("a", "e", "t", `{}`), "new-key", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	require.Equal(t, "a", before.Notifications(t, 1)[0].Channel, "the connection opened before the reload stays")

	require.Equal(t, 4001, h.Dial(t, mint("old-secret")).WaitClosed(t), "a token signed with the old secret")
	after := h.Dial(t, mint("new-secret"))
	after.Subscribe(t, "a")
	require.Equal(t, -32005, after.CallErr(t, "subscribe", map[string]any{"channel": "b"}).Code, "the new max_subscriptions")

	// delivery.max_batch: a connection opened after the reload gets batches
	// of the new size; the one opened before keeps its own.
	five := make([]map[string]any, 5)
	for i := range five {
		five[i] = heraldtest.N("a", "e", "t", `{}`)
	}
	status, body = h.Do(t, http.MethodPost, "/v1/publish", map[string]any{"notifications": five}, "new-key", nil)
	require.Equal(t, http.StatusOK, status, string(body))
	for got := 0; got < 5; {
		select {
		case b := <-after.Batches:
			require.LessOrEqual(t, len(b), 2, "batches of the new delivery.max_batch")
			got += len(b)
		case <-time.After(heraldtest.Timeout):
			t.Fatal("the new connection did not get the publish")
		}
	}
	select {
	case b := <-before.Batches:
		require.Len(t, b, 5, "the connection opened before keeps max_batch 128: one batch")
	case <-time.After(heraldtest.Timeout):
		t.Fatal("the old connection did not get the publish")
	}
}

// With server.tls, the client commands that take the hub's address from
// the config (pub, plugins, call, sub) reach it over https and wss and
// trust its certificate file, self-signed as a dev one is. They once
// derived http:// and ws:// from server.listen.
func TestClientCommandsFollowTheConfigsTLS(t *testing.T) {
	dir := t.TempDir()
	writeCert(t, filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), 1)
	cfg, _ := writeTLSConfig(t, dir, fmt.Sprintf("plugin \"echo\" {\n  command = %q\n}\n", heraldtest.Binary(t, "examples/echo-plugin")))
	h := heraldtest.StartWithConfig(t, cfg, nil)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, subErr := startSub(ctx, t, "-config", cfg, "-token", h.Token(t, "alice"), "-channel", "news")
	lines := make(chan string, 10)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	require.Eventually(t, func() bool { return strings.Contains(subErr.String(), "subscribed") }, heraldtest.Timeout, 20*time.Millisecond,
		"herald sub: %s", subErr)

	out, errOut, code := herald(t, "pub", "-config", cfg, "-channel", "news", "-event", "new", "-object", `{"n":1}`)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"channel":"news"`)
	select {
	case line := <-lines:
		require.Contains(t, line, `"channel":"news"`)
	case <-time.After(heraldtest.Timeout):
		t.Fatalf("herald sub printed nothing; stderr: %s", subErr)
	}

	out, errOut, code = herald(t, "plugins", "-config", cfg)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, "echo")
	out, errOut, code = herald(t, "call", "-config", cfg, "echo.say", `{"text":"over tls","user":"bob"}`)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"channel": "echo:bob"`)
	out, errOut, code = herald(t, "call", "-config", cfg, "-token", h.Token(t, "alice"), "echo.say", `{"text":"as a client"}`)
	require.Equal(t, 0, code, errOut)
	require.Contains(t, out, `"channel": "echo:alice"`)
}
