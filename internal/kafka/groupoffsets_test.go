package kafka

import "testing"

// TestGroupOffsetsPartition checks the __consumer_offsets partition against values computed with
// Java's String.hashCode, including its MinInt32 case.
func TestGroupOffsetsPartition(t *testing.T) {
	for _, tt := range []struct {
		group      string
		partitions int
		want       int32
	}{
		{"hello", 50, 22},                   // hashCode 99162322
		{"polygenelubricants", 50, 0},       // hashCode MinInt32
		{"idnow-connector-enricher", 50, 8}, // hashCode -1294738140
		{"itest.group.TestX.0a1b2c3d", 10, 8},
		{"é-group", 50, 7},
	} {
		if got := GroupOffsetsPartition(tt.group, tt.partitions); got != tt.want {
			t.Errorf("GroupOffsetsPartition(%q, %d) = %d, want %d", tt.group, tt.partitions, got, tt.want)
		}
	}
}
