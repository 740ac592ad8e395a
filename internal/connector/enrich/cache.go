package enrich

import (
	"maps"
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

// cacheMaxBytes bounds the bytes of output records the cache holds (keys, values, headers).
// max_poll_records results of up to max.message.bytes each could otherwise hold gigabytes;
// beyond the bound the oldest entries go, and a dropped result only costs its API calls again.
const cacheMaxBytes = 64 << 20

// cacheEntry is a cached result with its size and insertion sequence (for dropping the oldest).
type cacheEntry struct {
	v    cachedResult
	size int
	seq  uint64
}

// cacheOrder is an entry's place in the insertion order; stale when the entry was replaced or
// dropped since (its seq no longer matches).
type cacheOrder struct {
	pos recordPos
	seq uint64
}

// resultCache keeps the results of the records of the uncommitted batch, so that a batch
// consumed again after an abort (a produce failure, a record rejected for good) does not ask the
// IDnow API again for what it already answered: a batch stuck on Kafka must not turn into a loop
// of API calls. Entries are dropped when their batch commits, when their partition is no longer
// assigned to this member (revoked and not assigned back: its new owner enriches it), and, the
// oldest first, beyond maxBytes of cached output.
type resultCache struct {
	mu       sync.Mutex
	m        map[recordPos]cacheEntry
	order    []cacheOrder // insertion order, oldest first
	seq      uint64
	bytes    int
	maxBytes int // 0 = cacheMaxBytes
}

func (c *resultCache) get(r *kgo.Record) (cachedResult, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[posOf(r)]
	return v.v, ok
}

func (c *resultCache) put(r *kgo.Record, v cachedResult) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[recordPos]cacheEntry{}
	}
	pos := posOf(r)
	c.bytes -= c.m[pos].size
	c.seq++
	size := resultBytes(v.res)
	c.m[pos] = cacheEntry{v: v, size: size, seq: c.seq}
	c.order = append(c.order, cacheOrder{pos, c.seq})
	c.bytes += size
	limit := c.maxBytes
	if limit <= 0 {
		limit = cacheMaxBytes
	}
	// The entry just put stays even alone over the limit: the batch needs it next time.
	for c.bytes > limit && len(c.order) > 0 && len(c.m) > 1 {
		o := c.order[0]
		c.order = c.order[1:]
		if e, ok := c.m[o.pos]; ok && e.seq == o.seq {
			c.del(o.pos)
		}
	}
	if len(c.order) > 2*len(c.m)+64 {
		c.compact()
	}
}

// del drops pos; the caller holds c.mu.
func (c *resultCache) del(pos recordPos) {
	c.bytes -= c.m[pos].size
	delete(c.m, pos)
}

// compact drops stale places from the insertion order; the caller holds c.mu.
func (c *resultCache) compact() {
	live := c.order[:0]
	for _, o := range c.order {
		if e, ok := c.m[o.pos]; ok && e.seq == o.seq {
			live = append(live, o)
		}
	}
	clear(c.order[len(live):])
	c.order = live
}

// forget drops the entries of committed records.
func (c *resultCache) forget(recs []*kgo.Record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range recs {
		c.del(posOf(r))
	}
	c.compact()
}

// retainPartitions drops the entries of topic's partitions not in owned.
func (c *resultCache) retainPartitions(topic string, owned map[int32]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for pos := range c.m {
		if pos.topic == topic && !owned[pos.partition] {
			c.del(pos)
		}
	}
	c.compact()
}

func (c *resultCache) size() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bytes
}

func (c *resultCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

// resultBytes is what a result's records hold in memory, as counted against cacheMaxBytes.
func resultBytes(res Result) int {
	n := 0
	for _, r := range res.Records {
		n += len(r.Topic) + len(r.Key) + len(r.Value)
		for _, h := range r.Headers {
			n += len(h.Key) + len(h.Value)
		}
	}
	return n
}

// dropUnowned drops the cached results of input partitions this member does not own: revoked
// or lost and not assigned back. It runs after each assignment (an eager rebalance revokes
// everything and hands most of it back, so revoking alone must not drop) and after each commit.
func (e *Enricher) dropUnowned() {
	p := e.progress
	p.mu.Lock()
	owned := maps.Clone(p.assigned)
	p.mu.Unlock()
	e.cache.retainPartitions(e.deps.Topics.Sessions, owned)
}

// freshRecords copies res's records for producing: franz-go does not allow producing the same
// *kgo.Record twice, and a cached result may be produced once per attempt.
func freshRecords(res Result) []*kgo.Record {
	out := make([]*kgo.Record, len(res.Records))
	for i, r := range res.Records {
		out[i] = &kgo.Record{Topic: r.Topic, Partition: r.Partition, Key: r.Key, Value: r.Value, Headers: r.Headers}
	}
	return out
}
