func runModelBench(json: Bool) throws { throw BenchNotBuilt() }
