func runPipelineBench(json: Bool) throws { throw BenchNotBuilt() }
