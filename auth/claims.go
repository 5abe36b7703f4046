package auth

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Claims are what a verified token says about its holder. A Claims value
// is the caller's and is not shared with the Verifier; read it from any
// goroutine, but do not modify it while others read it.
type Claims struct {
	// Subject (sub) is the player's stable user id, shown to the room.
	Subject string
	// Issuer (iss) and Audience (aud), as in the token.
	Issuer   string
	Audience []string
	// ExpiresAt (exp), NotBefore (nbf), IssuedAt (iat); zero when absent.
	ExpiresAt time.Time
	NotBefore time.Time
	IssuedAt  time.Time
	// Rooms (room) are the room ids and patterns the token admits; nil
	// when the claim is absent (any room), empty when it is an empty list
	// (no room).
	Rooms []string
	// Create (create): the holder may create rooms.
	Create bool
	// MaxTickRate (max_tick_rate) and MaxPlayers (max_players) bound the
	// room options the holder may set when creating a room; 0 when absent
	// (only the relay's own limits apply).
	MaxTickRate int
	MaxPlayers  int
	// Meta (meta) is player metadata set by the game backend; nil when
	// absent.
	Meta map[string]string
}

// AllowsAnyRoom reports whether the token has no room claim.
func (c *Claims) AllowsAnyRoom() bool { return c.Rooms == nil }

// AllowsRoom reports whether the token admits room id: the room claim is
// absent, or one of its entries equals id or matches it as a pattern ("*"
// any run of characters, "?" one character).
func (c *Claims) AllowsRoom(id string) bool {
	if c.Rooms == nil {
		return true
	}
	for _, p := range c.Rooms {
		// Patterns were checked to hold only room-id characters, '*' and
		// '?', so path.Match cannot fail and '/' never occurs.
		if ok, _ := path.Match(p, id); ok {
			return true
		}
	}
	return false
}

// CheckJoin returns nil when the token admits joining room id, else an
// *Error with ReasonRoomNotAllowed.
func (c *Claims) CheckJoin(id string) error {
	if !c.AllowsRoom(id) {
		return refuse(ReasonRoomNotAllowed, "token does not admit room %s", quote(id))
	}
	return nil
}

// CheckCreate returns nil when the token allows creating room id with the
// given options, else an *Error: ReasonCreateNotAllowed without the create
// claim, ReasonRoomNotAllowed when id is not admitted (an empty id — a
// server-made room code — is admitted only by a token without a room
// claim), ReasonOptionNotAllowed when tickRate or maxPlayers exceeds the
// token's bound. Pass the values the room will really get, after the
// relay's defaults are applied, not the zeros a client may send.
func (c *Claims) CheckCreate(id string, tickRate, maxPlayers int) error {
	switch {
	case !c.Create:
		return refuse(ReasonCreateNotAllowed, "token does not allow creating rooms")
	case id == "" && !c.AllowsAnyRoom():
		return refuse(ReasonRoomNotAllowed, "token admits only named rooms, not a server-made code")
	case id != "" && !c.AllowsRoom(id):
		return refuse(ReasonRoomNotAllowed, "token does not admit room %s", quote(id))
	case c.MaxTickRate > 0 && tickRate > c.MaxTickRate:
		return refuse(ReasonOptionNotAllowed, "tick rate %d above the token's max_tick_rate %d", tickRate, c.MaxTickRate)
	case c.MaxPlayers > 0 && maxPlayers > c.MaxPlayers:
		return refuse(ReasonOptionNotAllowed, "max players %d above the token's max_players %d", maxPlayers, c.MaxPlayers)
	}
	return nil
}

// tokenClaims is the JSON payload of a token. Its json tags are the claim
// names of the contract in the package documentation (a test checks that
// every one is documented).
type tokenClaims struct {
	jwt.RegisteredClaims
	Room        roomClaim         `json:"room,omitempty"`
	Create      bool              `json:"create,omitempty"`
	MaxTickRate *int64            `json:"max_tick_rate,omitempty"`
	MaxPlayers  *int64            `json:"max_players,omitempty"`
	Meta        map[string]string `json:"meta,omitempty"`
}

// roomClaim is a string or an array of strings; nil when absent or null.
type roomClaim []string

func (r *roomClaim) UnmarshalJSON(b []byte) error {
	switch {
	case bytes.Equal(b, []byte("null")):
		*r = nil
		return nil
	case len(b) > 0 && b[0] == '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*r = roomClaim{s}
		return nil
	default:
		var list []string
		if err := json.Unmarshal(b, &list); err != nil {
			return errors.New("room claim must be a string or an array of strings")
		}
		if list == nil {
			list = []string{}
		}
		*r = list
		return nil
	}
}

// claims checks the relay's own claims (the JWT library has checked exp,
// nbf, iat, aud and iss) and converts them.
func (t *tokenClaims) claims(maxMetaBytes int) (*Claims, *Error) {
	if t.Subject == "" {
		return nil, refuse(ReasonMissingClaim, "sub claim is required")
	}
	if len(t.Subject) > MaxSubjectBytes {
		return nil, refuse(ReasonInvalidClaim, "sub of %d bytes, above %d", len(t.Subject), MaxSubjectBytes)
	}
	if len(t.Room) > MaxRoomPatterns {
		return nil, refuse(ReasonInvalidClaim, "room claim lists %d rooms, above %d", len(t.Room), MaxRoomPatterns)
	}
	for _, p := range t.Room {
		if err := checkRoomPattern(p); err != nil {
			return nil, refuse(ReasonInvalidClaim, "room %s: %v", quote(p), err)
		}
	}
	c := &Claims{
		Subject:  t.Subject,
		Issuer:   t.Issuer,
		Audience: t.Audience,
		Rooms:    t.Room,
		Create:   t.Create,
		Meta:     t.Meta,
	}
	var err *Error
	if c.MaxTickRate, err = positive("max_tick_rate", t.MaxTickRate); err != nil {
		return nil, err
	}
	if c.MaxPlayers, err = positive("max_players", t.MaxPlayers); err != nil {
		return nil, err
	}
	size := 0
	for k, v := range t.Meta {
		if k == "" {
			return nil, refuse(ReasonInvalidClaim, "meta has an empty key")
		}
		size += len(k) + len(v)
	}
	if size > maxMetaBytes {
		return nil, refuse(ReasonInvalidClaim, "meta of %d bytes, above %d", size, maxMetaBytes)
	}
	if t.ExpiresAt != nil {
		c.ExpiresAt = t.ExpiresAt.Time
	}
	if t.NotBefore != nil {
		c.NotBefore = t.NotBefore.Time
	}
	if t.IssuedAt != nil {
		c.IssuedAt = t.IssuedAt.Time
	}
	return c, nil
}

func positive(name string, v *int64) (int, *Error) {
	if v == nil {
		return 0, nil
	}
	if *v <= 0 || *v > 1<<31-1 {
		return 0, refuse(ReasonInvalidClaim, "%s %d is not a positive 32-bit integer", name, *v)
	}
	return int(*v), nil
}

// checkRoomPattern accepts a room id (1-64 bytes of [A-Za-z0-9_.:-]) in
// which '*' and '?' may also appear.
func checkRoomPattern(p string) error {
	if p == "" || len(p) > MaxRoomIDBytes {
		return fmt.Errorf("want 1 to %d bytes", MaxRoomIDBytes)
	}
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-', c == '*', c == '?':
		default:
			return fmt.Errorf("byte %q is not allowed in a room id or pattern", c)
		}
	}
	return nil
}
