//! Go text/template subset with sprig functions, for `layout` and webhook headers. (Being written.)
