func runLearningBench(json: Bool) throws { throw BenchNotBuilt() }
