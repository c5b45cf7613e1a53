//! The check before delivery: a certificate a backend returned is stored only if its key
//! is the CSR's, it names exactly the order's identifiers, it is valid now and its chain
//! links (to a configured trust anchor, when there is one).
