"""The deploy controller: model versions into rollouts, gated by live agreement."""
