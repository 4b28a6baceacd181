package kafka

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"golang.org/x/oauth2"
	"golang.org/x/oauth2/clientcredentials"
)

const (
	// DefaultTokenRenewBefore: an OAUTHBEARER token is replaced this long
	// before it expires, so that no connection or re-authentication ever
	// presents an expired one (GCN's tokens last about an hour). For a
	// token that lasts less than twice this, half its lifetime is used.
	DefaultTokenRenewBefore = 5 * time.Minute
	// TokenRequestTimeout bounds one request to the token endpoint.
	TokenRequestTimeout = 30 * time.Second
)

// TokenSource fetches OAUTHBEARER tokens with the OIDC client-credentials
// flow (client id and secret, no scope, as GCN's own clients do) and
// reuses each until it is due for renewal. It is safe for concurrent use:
// one fetch at a time, the others wait for it.
type TokenSource struct {
	cfg         clientcredentials.Config
	renewBefore time.Duration
	http        *http.Client

	mu      sync.Mutex
	tok     *oauth2.Token
	renewAt time.Time
	fetches int
}

// NewTokenSource returns a source of tokens from tokenURL for the client
// id and secret. renewBefore 0 = DefaultTokenRenewBefore.
func NewTokenSource(tokenURL, clientID, secret string, renewBefore time.Duration) *TokenSource {
	return &TokenSource{
		cfg:         clientcredentials.Config{ClientID: clientID, ClientSecret: secret, TokenURL: tokenURL},
		renewBefore: cmp.Or(renewBefore, DefaultTokenRenewBefore),
		http:        &http.Client{Timeout: TokenRequestTimeout},
	}
}

// Token returns a token that is not due for renewal, fetching a new one
// when needed.
func (s *TokenSource) Token(ctx context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	if s.tok != nil && now.Before(s.renewAt) {
		return s.tok.AccessToken, nil
	}
	tok, err := s.cfg.Token(context.WithValue(ctx, oauth2.HTTPClient, s.http))
	if err != nil {
		return "", tokenError(err)
	}
	if tok.AccessToken == "" {
		return "", &TokenError{msg: "the token endpoint answered without an access token"}
	}
	s.fetches++
	s.tok = tok
	if tok.Expiry.IsZero() {
		// No expires_in: the token does not expire (RFC 6749); keep it
		// until the cluster refuses it.
		s.renewAt = now.Add(100 * 365 * 24 * time.Hour)
	} else {
		before := min(s.renewBefore, tok.Expiry.Sub(now)/2)
		s.renewAt = tok.Expiry.Add(-before)
	}
	return tok.AccessToken, nil
}

// Fetches is how many tokens were fetched so far.
func (s *TokenSource) Fetches() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fetches
}

// TokenError is a failed token request, on one line and without the
// secret.
type TokenError struct {
	Status int    // HTTP status of the answer; 0 if there was none
	Code   string // RFC 6749 error code, e.g. "invalid_client"
	msg    string
	err    error
}

func (e *TokenError) Error() string { return "OAuth token request: " + e.msg }
func (e *TokenError) Unwrap() error { return e.err }

// Refused reports an answer that refuses the client's credentials (HTTP
// 400 or 401 with an OAuth error, or 403), as opposed to the endpoint
// being unreachable or failing.
func (e *TokenError) Refused() bool {
	return e.Code != "" || e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
}

func tokenError(err error) error {
	var re *oauth2.RetrieveError
	if !errors.As(err, &re) {
		return &TokenError{msg: err.Error(), err: err}
	}
	te := &TokenError{Code: re.ErrorCode, err: err}
	if re.Response != nil {
		te.Status = re.Response.StatusCode
	}
	switch {
	case re.ErrorCode != "":
		te.msg = fmt.Sprintf("HTTP %d %s", te.Status, re.ErrorCode)
		if re.ErrorDescription != "" {
			te.msg += ": " + oneLine(re.ErrorDescription)
		}
	default:
		te.msg = fmt.Sprintf("HTTP %d: %s", te.Status, oneLine(string(re.Body)))
	}
	return te
}

// oneLine keeps an endpoint's text to one short line.
func oneLine(s string) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}
