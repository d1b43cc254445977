package redisstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/sessionkit/sessionkit/redisstore"
)

// This example connects to the Redis that the environment names (REDIS_URL,
// or REDIS_HOST, REDIS_PORT, ...), checks it at start-up, and stores,
// extends and removes one record.
func ExampleOpen() {
	cfg, err := redisstore.FromEnv()
	if err != nil {
		log.Fatal(err) // for example: redisstore: REDIS_PORT: want a port number 1-65535, got "abc"
	}
	cfg.KeyPrefix = "myapp:" // keys are "myapp:session:<id>"
	store, err := redisstore.Open(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()

	ctx := context.Background()
	if err := store.Ping(ctx); err != nil {
		log.Fatal(err)
	}

	// The id is the caller's: a hash of the client's secret token, never
	// the token itself.
	id := "Yx3bR1Rj2l8xg7XKcR3o6Qm2V9k0hQWl4P2y8cWb0xQ"
	if _, err := store.Insert(ctx, id, []byte(`{"v":1}`), 30*time.Minute); err != nil {
		log.Fatal(err)
	}
	record, found, err := store.Load(ctx, id, 30*time.Minute) // read and extend: one GETEX
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("found=%v record=%s\n", found, record)
	if err := store.Remove(ctx, id); err != nil {
		log.Fatal(err)
	}
	_, found, err = store.Load(ctx, id, 30*time.Minute)
	fmt.Printf("after Remove: found=%v err=%v\n", found, err)
	// Output:
	// found=true record={"v":1}
	// after Remove: found=false err=<nil>
}

// ParseURL reads a Redis URL, never repeating it (or its password) in an
// error.
func ExampleParseURL() {
	cfg, err := redisstore.ParseURL("rediss://app:secret@redis.internal:6380/2")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(cfg.Addr, cfg.Username, cfg.DB, cfg.TLS != nil)

	_, err = redisstore.ParseURL("redis://app:secret@redis.internal:99999")
	fmt.Println(err)
	// Output:
	// redis.internal:6380 app 2 true
	// redisstore: redis URL: want a port number 1-65535
}

// Describe says what a Store error means in an operator's words.
func ExampleDescribe() {
	store, err := redisstore.Open(redisstore.Config{Addr: "127.0.0.1:1"}) // nothing listens on port 1
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	err = store.Ping(context.Background())
	fmt.Println(errors.Is(err, redisstore.ErrUnavailable))
	fmt.Println(redisstore.Describe(err, redisstore.Config{Addr: "127.0.0.1:1"}))
	// Output:
	// true
	// connection refused to 127.0.0.1:1 (REDIS_URL or REDIS_HOST and REDIS_PORT): is Redis running there?
}
