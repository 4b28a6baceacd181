package kafkatest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// OIDC is a local OAuth 2.0 token endpoint for the client-credentials
// grant, as GCN's auth server answers it: a client id and secret (HTTP
// Basic or form fields) buy a bearer token that lasts Lifetime.
type OIDC struct {
	URL      string // the token endpoint
	ClientID string
	Secret   string
	Lifetime time.Duration

	mu     sync.Mutex
	issued []Issued
}

// Issued is a token the endpoint issued.
type Issued struct {
	Token           string
	At, Expires     time.Time
	ClientID, Scope string
}

// StartOIDC starts an endpoint for one client, closed at the test's end.
func StartOIDC(t testing.TB, clientID, secret string, lifetime time.Duration) *OIDC {
	o := &OIDC{ClientID: clientID, Secret: secret, Lifetime: lifetime}
	srv := httptest.NewServer(http.HandlerFunc(o.serve))
	t.Cleanup(srv.Close)
	o.URL = srv.URL + "/oauth2/token"
	return o
}

func (o *OIDC) serve(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	fail := func(code int, e string) {
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]string{"error": e, "error_description": "client authentication failed"})
	}
	if r.Method != http.MethodPost || r.URL.Path != "/oauth2/token" {
		fail(http.StatusNotFound, "invalid_request")
		return
	}
	if err := r.ParseForm(); err != nil || r.PostForm.Get("grant_type") != "client_credentials" {
		fail(http.StatusBadRequest, "unsupported_grant_type")
		return
	}
	id, secret, ok := r.BasicAuth()
	if !ok {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != o.ClientID || secret != o.Secret {
		fail(http.StatusUnauthorized, "invalid_client")
		return
	}
	var b [16]byte
	rand.Read(b[:])
	now := time.Now()
	is := Issued{Token: hex.EncodeToString(b[:]), At: now, Expires: now.Add(o.Lifetime), ClientID: id, Scope: r.PostForm.Get("scope")}
	o.mu.Lock()
	o.issued = append(o.issued, is)
	o.mu.Unlock()
	json.NewEncoder(w).Encode(map[string]any{
		"access_token": is.Token, "token_type": "Bearer", "expires_in": int(o.Lifetime / time.Second),
	})
}

// Valid reports whether tok was issued here and has not expired.
func (o *OIDC) Valid(tok string) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	for _, is := range o.issued {
		if is.Token == tok {
			return time.Now().Before(is.Expires)
		}
	}
	return false
}

// Issued returns the tokens issued so far, in order.
func (o *OIDC) Issued() []Issued {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Issued(nil), o.issued...)
}
