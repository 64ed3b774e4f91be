//! A local Azure Web PubSub service for tests and development.
