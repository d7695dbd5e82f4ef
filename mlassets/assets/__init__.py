"""Asset groups, one subpackage each."""
