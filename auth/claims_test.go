package auth_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/tickrelay/tickrelay/auth"
)

func TestClaimsAllowsRoom(t *testing.T) {
	t.Parallel()
	c := &auth.Claims{Rooms: []string{"lobby", "match-*", "duel-??", "*:eu", "exact.v1"}}
	for id, want := range map[string]bool{
		"lobby":       true,
		"lobby2":      false,
		"Lobby":       false, // room ids are case-sensitive
		"match-":      true,  // * matches an empty run
		"match-1":     true,
		"match-eu-42": true,
		"xmatch-1":    false,
		"duel-ab":     true,
		"duel-a":      false,
		"duel-abc":    false,
		"ranked:eu":   true,
		"ranked:us":   false,
		"exact.v1":    true,
		"exactxv1":    false, // '.' is literal
		"":            false,
	} {
		require.Equal(t, want, c.AllowsRoom(id), id)
	}
	require.False(t, c.AllowsAnyRoom())
	require.True(t, (&auth.Claims{}).AllowsRoom("anything"), "no room claim: any room")
	require.False(t, (&auth.Claims{Rooms: []string{}}).AllowsRoom("lobby"), "empty list: no room")
}

func TestClaimsCheckJoinAndCreate(t *testing.T) {
	t.Parallel()
	creator := &auth.Claims{Create: true, Rooms: []string{"cup-*"}, MaxTickRate: 60, MaxPlayers: 10}
	anyRoom := &auth.Claims{Create: true}
	joiner := &auth.Claims{Rooms: []string{"cup-*"}}

	require.NoError(t, creator.CheckJoin("cup-1"))
	requireReason(t, auth.ReasonRoomNotAllowed, creator.CheckJoin("lobby"))
	require.NoError(t, anyRoom.CheckJoin("lobby"))

	for _, tc := range []struct {
		name       string
		c          *auth.Claims
		id         string
		tick, max  int
		wantReason auth.Reason
	}{
		{"within bounds", creator, "cup-1", 60, 10, ""},
		{"below bounds", creator, "cup-1", 20, 2, ""},
		{"tick rate above", creator, "cup-1", 61, 10, auth.ReasonOptionNotAllowed},
		{"players above", creator, "cup-1", 60, 11, auth.ReasonOptionNotAllowed},
		{"room not admitted", creator, "lobby", 30, 4, auth.ReasonRoomNotAllowed},
		{"server-made code needs any room", creator, "", 30, 4, auth.ReasonRoomNotAllowed},
		{"server-made code", anyRoom, "", 120, 1000, ""},
		{"no bounds in the token", anyRoom, "lobby", 120, 1000, ""},
		{"no create claim", joiner, "cup-1", 30, 4, auth.ReasonCreateNotAllowed},
	} {
		err := tc.c.CheckCreate(tc.id, tc.tick, tc.max)
		if tc.wantReason == "" {
			require.NoError(t, err, tc.name)
			continue
		}
		requireReason(t, tc.wantReason, err, tc.name)
	}
}
