package tokenfile

import "golang.org/x/oauth2"

// OAuth2 returns the Source as an oauth2.TokenSource, for libraries that take one.
//
// Use it directly, as oauth2.Transport{Source: src.OAuth2()}: every call then reads the
// file (cheaply). Do not wrap it in oauth2.ReuseTokenSource (oauth2.NewClient does): that
// keeps a token until its expiry even after the operator replaced it, and oauth2.Transport
// does not retry a 401. NewTransport does both right.
func (s *Source) OAuth2() oauth2.TokenSource { return oauth2Source{s} }

type oauth2Source struct{ s *Source }

func (o oauth2Source) Token() (*oauth2.Token, error) {
	t, err := o.s.Token()
	if err != nil {
		return nil, err
	}
	return &oauth2.Token{AccessToken: t.Value, TokenType: t.Type, Expiry: t.ExpiresAt}, nil
}
