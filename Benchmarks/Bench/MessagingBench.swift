func runMessagingBench(json: Bool) throws { throw BenchNotBuilt() }
