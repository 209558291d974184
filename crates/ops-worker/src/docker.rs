//! The Docker engine, through bollard.
