//! SASL mechanisms (PLAIN, LOGIN; XOAUTH2 later) and the credentials they carry.
