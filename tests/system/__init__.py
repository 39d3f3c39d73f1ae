"""system tier (a package, so test modules of the same name in two tiers do not collide)."""
