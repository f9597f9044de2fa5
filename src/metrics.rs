//! Every metric smtp-canary exports, defined in one place.
