package kafka

import "unicode/utf16"

// ConsumerOffsetsTopic is Kafka's internal topic that holds committed offsets, including the
// enricher's transactional offset commits.
const ConsumerOffsetsTopic = "__consumer_offsets"

// GroupOffsetsPartition is the ConsumerOffsetsTopic partition Kafka stores group's offsets in:
// abs(Java String.hashCode(group)) mod the partition count (GroupCoordinator.partitionFor).
func GroupOffsetsPartition(group string, partitions int) int32 {
	var h int32
	for _, c := range utf16.Encode([]rune(group)) {
		h = 31*h + int32(c)
	}
	// Kafka's Utils.abs: the sign bit cleared, so MinInt32 maps to 0 rather than overflowing.
	return int32(int64(h&0x7fffffff) % int64(partitions))
}
