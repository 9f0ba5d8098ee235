//! SOQL subset: parse and evaluate.
