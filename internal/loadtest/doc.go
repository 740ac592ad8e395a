// Package loadtest is the project's benchmark tooling (issue 6): a bounded HTTP load generator
// for signed webhooks, a minimal reference receiver to compare the ingress against, child-process
// targets whose peak memory can be read from /proc, and runners that measure the ingress and the
// enricher and report their throughput as ratios against a reference measured in the same run.
//
// Absolute numbers on a shared machine are noise; ratios are not, as long as both sides of a
// ratio ran on the same machine, against the same broker, within the same minute. Everything
// binds to 127.0.0.1 and every run is bounded in requests and in time.
//
// This is test tooling: it generates its own webhook signing key (the way IDnow would sign) and
// never talks to anything but loopback, except a real broker named by KAFKA_BROKERS.
package loadtest
