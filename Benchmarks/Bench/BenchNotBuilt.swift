struct BenchNotBuilt: Error {}
