package enrich

import (
	"sync"

	"github.com/twmb/franz-go/pkg/kgo"
)

// recordPos names a consumed record by position; the log never changes what sits there.
type recordPos struct {
	topic     string
	partition int32
	offset    int64
}

func posOf(r *kgo.Record) recordPos { return recordPos{r.Topic, r.Partition, r.Offset} }

// cachedResult is a handled record's outcome kept until its batch commits.
type cachedResult struct {
	res Result
	// alone: the broker refused this record for good together with others of its batch (too
	// large, invalid, policy); the next attempt produces it on its own to learn whether it is
	// refused by itself.
	alone bool
}

// resultCache keeps the results of the records of the uncommitted batch, so that a batch
// consumed again after an abort (a produce failure, a record rejected for good) does not ask the
// IDnow API again for what it already answered: a batch stuck on Kafka must not turn into a loop
// of API calls. Entries are dropped when their batch commits; entries of partitions that moved
// away are dropped once the cache holds more than two batches.
type resultCache struct {
	mu sync.Mutex
	m  map[recordPos]cachedResult
}

func (c *resultCache) get(r *kgo.Record) (cachedResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[posOf(r)]
	return v, ok
}

func (c *resultCache) put(r *kgo.Record, v cachedResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[recordPos]cachedResult{}
	}
	c.m[posOf(r)] = v
}

// forget drops the entries of committed records.
func (c *resultCache) forget(recs []*kgo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		delete(c.m, posOf(r))
	}
}

// reset drops every entry.
func (c *resultCache) reset() {
	c.mu.Lock()
	defer c.mu.Unlock()
	clear(c.m)
}

func (c *resultCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// freshRecords copies res's records for producing: franz-go does not allow producing the same
// *kgo.Record twice, and a cached result may be produced once per attempt.
func freshRecords(res Result) []*kgo.Record {
	out := make([]*kgo.Record, len(res.Records))
	for i, r := range res.Records {
		out[i] = &kgo.Record{Topic: r.Topic, Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	return out
}
