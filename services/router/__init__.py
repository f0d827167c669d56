"""The router: decides per call whether the expert or an intern answers."""
