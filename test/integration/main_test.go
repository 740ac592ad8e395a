//go:build integration

// Package integration holds the integration suite: tests that run against a real Apache Kafka
// broker (and, later, the connector's processes) rather than kfake. It only builds with
// `-tags integration`; `make itest` runs it.
//
// Broker selection (see brokers): KAFKA_BROKERS if set (`make kafka-up` starts one on
// 127.0.0.1:19092), else an apache/kafka container through testcontainers-go when a Docker
// engine answers, else every test that needs a broker is skipped with instructions.
package integration

import (
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) {
	// Snapshot before any test runs, so only goroutines the tests leave behind count.
	ignore := goleak.IgnoreCurrent()
	code := m.Run()
	// The container (if one was started) is shared by the whole test binary, so it is
	// terminated here rather than in a test's Cleanup.
	usedContainer, err := terminateContainer()
	if err != nil {
		fmt.Fprintf(os.Stderr, "integration: terminate Kafka container: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	// testcontainers keeps Docker client and reaper goroutines for the life of the process
	// by design, so the leak check only means something when no container was used.
	if code == 0 && !usedContainer {
		if err := goleak.Find(ignore); err != nil {
			fmt.Fprintf(os.Stderr, "integration: goroutines leaked: %v\n", err)
			code = 1
		}
	}
	os.Exit(code)
}
