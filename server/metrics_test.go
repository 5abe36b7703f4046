package server

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/stretchr/testify/require"

	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// droppedByReason scrapes tickrelay_messages_dropped_total by its reason
// label.
func droppedByReason(t *testing.T, admin *adminClient) map[string]float64 {
	t.Helper()
	status, body := admin.do("GET", "/metrics", "")
	require.Equal(t, http.StatusOK, status)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(strings.NewReader(string(body)))
	require.NoError(t, err)
	out := map[string]float64{}
	for _, m := range families["tickrelay_messages_dropped_total"].GetMetric() {
		reason := ""
		for _, l := range m.GetLabel() {
			if l.GetName() == "reason" {
				reason = l.GetValue()
			}
		}
		out[reason] += m.GetCounter().GetValue()
	}
	return out
}

// Messages over their sender's tick budget are dropped, and counted as
// dropped, under reason over_tick_budget (the same number as
// tickrelay_over_tick_budget_messages_total).
func TestMessagesDroppedCountsOverTickBudget(t *testing.T) {
	t.Parallel()
	srv := startServer(t, func(c *Config) {
		c.Room.DefaultTickRate = 1 // one long tick takes the whole burst
		c.Room.SenderTickMessages = 2
	})
	admin := newAdminClient(t, srv, "")
	other := dial(t, srv)
	other.join("budget", 1)
	r := dialRaw(t, srv)
	r.upgrade()
	r.write(clientFrame(true, opBinary, joinMessage(t, "budget", 1), false))
	require.NotNil(t, r.readServerMessage().GetJoined())
	send := clientFrame(true, opBinary, marshal(t, &pb.ClientMessage{Body: &pb.ClientMessage_Send{Send: &pb.Send{Payload: []byte("x")}}}), false)
	var burst []byte
	for range 10 {
		burst = append(burst, send...)
	}
	r.write(burst)
	// The sender is told once per tick.
	var limited *pb.Error
	for limited == nil {
		limited = r.readServerMessage().GetError()
	}
	require.Equal(t, pb.ErrorCode_ERROR_CODE_RATE_LIMITED, limited.GetCode())
	// How many of the ten go over depends on where the tick boundary fell:
	// at least the ones past the budget of an unbroken tick.
	require.Eventually(t, func() bool {
		n := srv.Rooms().Stats().OverBudget
		return n > 0 && droppedByReason(t, admin)["over_tick_budget"] == float64(n)
	}, testTimeout, 10*time.Millisecond)
	st := srv.Rooms().Stats()
	require.Equal(t, st.OverBudget, st.MessagesDropped, "nothing else was dropped")
}
