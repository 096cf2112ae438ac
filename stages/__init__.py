"""Pipeline stages: one module per stage. A stage imports `curator`, never another stage."""
