package client_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/tickrelay/tickrelay/client"
	pb "github.com/tickrelay/tickrelay/proto/tickrelay/v1"
)

// These examples need a relay on 127.0.0.1:7600, so they are compiled but not
// run (no Output comment).

func ExampleDial() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://127.0.0.1:7600/ws", client.Options{
		// Called on the reader goroutine; the payloads are only valid
		// during the call.
		OnFrame: func(f *client.FrameView) {
			for _, d := range f.Deliveries {
				fmt.Printf("tick %d: %d bytes from player %d\n", f.Tick, len(d.Payload), d.Sender)
			}
		},
		OnClose: func(code int, reason string) {
			log.Printf("connection closed: %d %s", code, reason)
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
}

func ExampleClient_Join() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://127.0.0.1:7600/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()

	joined, err := c.Join(ctx, client.JoinOptions{
		RoomID:          "lobby-1",
		CreateIfMissing: true,
		Room:            client.RoomOptions{MaxPlayers: 8, TickRate: 30},
		Metadata:        map[string]string{"name": "ann"},
	})
	switch {
	case errors.Is(err, client.ErrRoomFull):
		log.Print("lobby-1 is full")
		return
	case err != nil:
		log.Fatal(err)
	}
	fmt.Printf("player %d in room %s, host %d, %d members\n",
		joined.PlayerID, joined.RoomID, joined.HostID, len(joined.Members))
}

func ExampleClient_Send() {
	ctx := context.Background()
	c, err := client.Dial(ctx, "ws://127.0.0.1:7600/ws", client.Options{
		// A Send is not acknowledged; refusals arrive here.
		OnError: func(err *client.ServerError) { log.Print(err) },
	})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Join(ctx, client.JoinOptions{Create: true}); err != nil {
		log.Fatal(err)
	}
	// To every other member; the buffer may be reused at once.
	position := []byte{1, 2, 3, 4}
	if err := c.Send(position, client.SendOptions{Kind: 1, LatestOnly: true}); err != nil {
		log.Fatal(err)
	}
	// To player 2 only, with a copy back to the sender.
	if err := c.Send([]byte("gg"), client.SendOptions{Kind: 2, Targets: []uint32{2}, Echo: true}); err != nil {
		log.Fatal(err)
	}
}

func ExampleClient_Ping() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := client.Dial(ctx, "ws://127.0.0.1:7600/ws", client.Options{})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	rtt, offset, err := c.Ping(ctx)
	if err != nil {
		log.Fatal(err)
	}
	// Local time + offset estimates the server's clock.
	fmt.Printf("rtt %v, server clock %v\n", rtt, time.Now().Add(offset))
}

func ExampleServerError() {
	err := fmt.Errorf("join: %w", &client.ServerError{Code: pb.ErrorCode_ERROR_CODE_ROOM_FULL, Message: "8/8"})
	var se *client.ServerError
	fmt.Println(errors.Is(err, client.ErrRoomFull), errors.As(err, &se), se.Message)
	// Output: true true 8/8
}
