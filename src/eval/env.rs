//! Lexical scopes. A closure keeps the scope it was defined in alive through an `Rc`.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

use crate::eval::value::Value;
use crate::syntax::ast::{Name, Span};

#[derive(Default)]
pub struct Env {
    vars: RefCell<HashMap<Name, Value>>,
    /// Where `let` and sweep columns bound their names, for "is not a function" errors.
    spans: RefCell<HashMap<Name, Span>>,
    parent: Option<Rc<Env>>,
}

impl Env {
    pub fn root() -> Rc<Env> {
        Rc::new(Env::default())
    }

    pub fn child(parent: &Rc<Env>) -> Rc<Env> {
        Rc::new(Env {
            vars: RefCell::new(HashMap::new()),
            spans: RefCell::new(HashMap::new()),
            parent: Some(parent.clone()),
        })
    }

    /// The enclosing scope.
    pub fn parent(&self) -> Option<&Rc<Env>> {
        self.parent.as_ref()
    }

    /// Drop every binding (to break the reference cycles closures make).
    pub fn clear(&self) {
        // Taken out first: dropping a value may drop closures whose scopes are borrowed here.
        let vars = std::mem::take(&mut *self.vars.borrow_mut());
        drop(vars);
    }

    pub fn define(&self, name: Name, value: Value) {
        self.vars.borrow_mut().insert(name, value);
    }

    /// Define `name`, remembering the source span that bound it.
    pub fn define_at(&self, name: Name, value: Value, span: Span) {
        self.spans.borrow_mut().insert(name.clone(), span);
        self.define(name, value);
    }

    /// Where the binding `name` resolves to was made, when it was made by `define_at`.
    pub fn bound_at(&self, name: &str) -> Option<Span> {
        let mut scope = Some(self);
        while let Some(env) = scope {
            if env.vars.borrow().contains_key(name) {
                return env.spans.borrow().get(name).copied();
            }
            scope = env.parent.as_deref();
        }
        None
    }

    pub fn get(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.vars.borrow().get(name) {
            return Some(v.clone());
        }
        let mut scope = self.parent.as_ref();
        while let Some(env) = scope {
            if let Some(v) = env.vars.borrow().get(name) {
                return Some(v.clone());
            }
            scope = env.parent.as_ref();
        }
        None
    }

    /// Rebind an existing variable in the nearest scope that has it; false if none does.
    pub fn assign(&self, name: &str, value: Value) -> bool {
        if let Some(slot) = self.vars.borrow_mut().get_mut(name) {
            *slot = value;
            return true;
        }
        match &self.parent {
            Some(p) => p.assign(name, value),
            None => false,
        }
    }

    /// Every name visible from here (for completion and "did you mean").
    pub fn names(&self) -> Vec<Name> {
        let mut out: Vec<Name> = self.vars.borrow().keys().cloned().collect();
        if let Some(p) = &self.parent {
            out.extend(p.names());
        }
        out.sort();
        out.dedup();
        out
    }

    /// The names and values defined in this scope alone, sorted by name.
    pub fn local_bindings(&self) -> Vec<(Name, Value)> {
        let mut out: Vec<(Name, Value)> = self
            .vars
            .borrow()
            .iter()
            .map(|(n, v)| (n.clone(), v.clone()))
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> Name {
        Rc::from(s)
    }

    #[test]
    fn lookups_walk_out_through_parents() {
        let root = Env::root();
        root.define(name("a"), Value::Num(1.0));
        let child = Env::child(&root);
        child.define(name("b"), Value::Num(2.0));
        assert!(matches!(child.get("a"), Some(Value::Num(x)) if x == 1.0));
        assert!(matches!(child.get("b"), Some(Value::Num(x)) if x == 2.0));
        assert!(
            root.get("b").is_none(),
            "a parent does not see its child's names"
        );
        assert!(child.get("c").is_none());
    }

    #[test]
    fn shadowing_and_assignment() {
        let root = Env::root();
        root.define(name("x"), Value::Num(1.0));
        let child = Env::child(&root);
        // Assignment changes the binding where it lives.
        assert!(child.assign("x", Value::Num(2.0)));
        assert!(matches!(root.get("x"), Some(Value::Num(x)) if x == 2.0));
        // A local definition shadows it; assignment then changes the local one.
        child.define(name("x"), Value::Num(10.0));
        assert!(child.assign("x", Value::Num(11.0)));
        assert!(matches!(child.get("x"), Some(Value::Num(x)) if x == 11.0));
        assert!(matches!(root.get("x"), Some(Value::Num(x)) if x == 2.0));
        assert!(!child.assign("missing", Value::None));
        assert!(
            child.get("missing").is_none(),
            "a failed assignment defines nothing"
        );
    }

    #[test]
    fn names_are_sorted_and_unique() {
        let root = Env::root();
        root.define(name("b"), Value::None);
        root.define(name("a"), Value::None);
        let child = Env::child(&root);
        child.define(name("b"), Value::None);
        child.define(name("c"), Value::None);
        let all: Vec<String> = child.names().iter().map(|n| n.to_string()).collect();
        assert_eq!(all, ["a", "b", "c"]);
        let local: Vec<String> = child
            .local_bindings()
            .iter()
            .map(|(n, _)| n.to_string())
            .collect();
        assert_eq!(local, ["b", "c"]);
    }
}
