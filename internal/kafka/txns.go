package kafka

import (
	"context"
	"errors"
	"fmt"

	"github.com/twmb/franz-go/pkg/kadm"
)

// OpenTransactions returns, from a DescribeProducers answer, every producer's transaction open
// on a partition (idempotent producers, listed too, have none), sorted by topic, partition and
// producer, and an error per partition whose leader could not describe it.
func OpenTransactions(described kadm.DescribedProducersTopics) (open []kadm.DescribedProducer, failed []error) {
	for _, t := range described.Sorted() {
		for _, p := range t.Partitions.Sorted() {
			if p.Err != nil {
				failed = append(failed, fmt.Errorf("%s[%d]: %w", p.Topic, p.Partition, p.Err))
				continue
			}
			for _, dp := range p.ActiveProducers.Sorted() {
				if dp.CurrentTxnStartOffset >= 0 {
					open = append(open, dp)
				}
			}
		}
	}
	return open, failed
}

// TxnEnd is a commit or abort marker for one producer's open transaction on one partition.
type TxnEnd struct {
	Topic         string
	Partition     int32
	ProducerID    int64
	ProducerEpoch int16 // the epoch the marker carries
	// CoordinatorEpoch as the partition's leader reports it; none (-1) is written as 0, as
	// kafka-transactions.sh abort does.
	CoordinatorEpoch int32
	Commit           bool
}

// TxnMarkerWriter writes transaction markers; *kadm.Client is one.
type TxnMarkerWriter interface {
	WriteTxnMarkers(ctx context.Context, markers ...kadm.TxnMarkers) (kadm.TxnMarkersResponses, error)
}

// WriteTxnEnds writes the markers of ends (WriteTxnMarkers, which needs ClusterAction) and
// returns per end nil when its partition's leader wrote it, else why not. err is the request's
// own failure; the ends it left unanswered carry it.
func WriteTxnEnds(ctx context.Context, w TxnMarkerWriter, ends []TxnEnd) (errs []error, err error) {
	markers := make([]kadm.TxnMarkers, len(ends))
	for i, e := range ends {
		markers[i] = kadm.TxnMarkers{
			ProducerID: e.ProducerID, ProducerEpoch: e.ProducerEpoch, Commit: e.Commit,
			CoordinatorEpoch: max(e.CoordinatorEpoch, 0), Topics: kadm.TopicsSet{e.Topic: {e.Partition: {}}},
		}
	}
	resp, err := w.WriteTxnMarkers(ctx, markers...)
	errs = make([]error, len(ends))
	for i, e := range ends {
		r, ok := resp[e.ProducerID].Topics[e.Topic].Partitions[e.Partition]
		switch {
		case !ok && err != nil:
			errs[i] = err
		case !ok:
			errs[i] = errors.New("no answer from the partition's leader")
		default:
			errs[i] = r.Err
		}
	}
	return errs, err
}
