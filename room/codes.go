package room

import (
	"crypto/rand"
	"fmt"
)

// maxRoomIDLen bounds client-chosen room ids.
const maxRoomIDLen = 64

// validRoomID reports whether id is 1-64 bytes of [A-Za-z0-9_.:-].
func validRoomID(id string) bool {
	if len(id) == 0 || len(id) > maxRoomIDLen {
		return false
	}
	for i := 0; i < len(id); i++ {
		c := id[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return false
		}
	}
	return true
}

// roomHash places a room id on a worker: FNV-1a (32 bit), then murmur3's
// finaliser. The finaliser matters: FNV-1a's low bits are poorly mixed (its
// lowest bit is just the parity of the bytes' lowest bits), and the worker
// is chosen with a modulo, so with 2 or 4 workers ids differing in one
// even byte would always land together. The hash must be stable for the
// life of the Manager: a room id always maps to the same worker, which is
// what lets each worker own its rooms map without a shared lock.
func roomHash(id string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(id); i++ {
		h ^= uint32(id[i])
		h *= 16777619
	}
	h ^= h >> 16
	h *= 0x85ebca6b
	h ^= h >> 13
	h *= 0xc2b2ae35
	h ^= h >> 16
	return h
}

// Server-made room codes: short enough to read out loud, from an alphabet
// without the look-alikes 0/O, 1/I/L.
const (
	codeAlphabet = "23456789ABCDEFGHJKMNPQRSTUVWXYZ"
	// Code lengths (Config.CodeLength): 31^6 is about 887 million codes,
	// each more character multiplies that by 31.
	defaultCodeLen = 6
	minCodeLen     = 4
	maxCodeLen     = 16
	// Largest multiple of len(codeAlphabet) that fits a byte: bytes at or
	// above it are rejected so every letter is equally likely.
	codeRejectAt = 256 - 256%len(codeAlphabet)
	// maxCodeAttempts bounds the search for a free code that hashes to the
	// creating worker (expected attempts: the number of workers).
	maxCodeAttempts = 100_000
)

// newRoomCode returns a fresh code, from crypto/rand so codes cannot be
// guessed from earlier ones, that hashes to w and names no room of w (and so
// no room at all: every room lives on the worker its id hashes to).
// randomCode makes a code of n characters of the code alphabet.
func randomCode(n int) (string, error) {
	var random [64]byte
	code := make([]byte, 0, n)
	for len(code) < n {
		rand.Read(random[:]) // never fails (Go 1.24+)
		for _, b := range random {
			if int(b) >= codeRejectAt {
				continue
			}
			code = append(code, codeAlphabet[int(b)%len(codeAlphabet)])
			if len(code) == n {
				break
			}
		}
	}
	return string(code), nil
}

func (w *worker) newRoomCode() (string, error) {
	var random [64]byte
	var buf [maxCodeLen]byte
	codeLen := w.m.cfg.CodeLength
	code := buf[:codeLen]
	for range maxCodeAttempts {
		rand.Read(random[:]) // never fails (Go 1.24+)
		n := 0
		for _, b := range random {
			if int(b) >= codeRejectAt {
				continue
			}
			code[n] = codeAlphabet[int(b)%len(codeAlphabet)]
			if n++; n == codeLen {
				break
			}
		}
		if n < codeLen {
			continue
		}
		if w.m.workerFor(string(code[:])) != w {
			continue
		}
		if _, taken := w.rooms[string(code[:])]; taken {
			continue
		}
		return string(code[:]), nil
	}
	return "", fmt.Errorf("room: no free room code after %d attempts", maxCodeAttempts)
}
