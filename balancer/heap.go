package balancer

// turn is an entry's next go in a schedule: when it is due, then the
// entry number, which breaks ties.
type turn struct {
	due   uint64
	entry uint32
}

func (a turn) before(b turn) bool {
	return a.due < b.due || (a.due == b.due && a.entry < b.entry)
}

// schedule is a binary min-heap of turns, for the builders that replay
// "whoever is due next" (maglev's weighted turns, round robin's stride
// schedule). Only the top ever changes: the caller pushes the top's due
// time later and calls fixTop. A concrete heap rather than container/heap
// keeps the comparisons inlined; the builds run millions of them.
type schedule []turn

// newSchedule returns a heap of entries 0..len(due)-1 with the given due
// times.
func newSchedule(due []uint64) schedule {
	s := make(schedule, len(due))
	for i, d := range due {
		s[i] = turn{due: d, entry: uint32(i)}
	}
	for i := len(s)/2 - 1; i >= 0; i-- {
		s.down(i)
	}
	return s
}

// fixTop restores the order after the top's due time has grown.
func (s schedule) fixTop() { s.down(0) }

func (s schedule) down(i int) {
	for {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(s) && s[l].before(s[least]) {
			least = l
		}
		if r < len(s) && s[r].before(s[least]) {
			least = r
		}
		if least == i {
			return
		}
		s[i], s[least] = s[least], s[i]
		i = least
	}
}
