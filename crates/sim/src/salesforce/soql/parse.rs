//! Recursive-descent parser for the SOQL subset, with SOQL's clause order
//! (`SELECT … FROM … WHERE … ORDER BY … LIMIT … OFFSET …`).

use super::lex::{Tok, Token, tokenize, unexpected};
use super::{Expr, FieldRef, InList, LikePattern, Literal, Order, Query, RelativeDate, SoqlError};

/// Words that cannot name a field (SOQL's reserved keywords, plus the boolean and null literals).
const RESERVED: &[&str] = &[
    "AND", "ASC", "DESC", "EXCLUDES", "FIRST", "FROM", "GROUP", "HAVING", "IN", "INCLUDES", "LAST",
    "LIKE", "LIMIT", "NOT", "NULL", "NULLS", "OR", "SELECT", "WHERE", "WITH", "TRUE", "FALSE",
];

/// Salesforce refuses an OFFSET above this.
const MAX_OFFSET: usize = 2000;

pub(crate) fn parse(src: &str) -> Result<Query, SoqlError> {
    let toks = tokenize(src)?;
    let mut p = Parser { src, toks, pos: 0 };
    p.query()
}

struct Parser<'a> {
    src: &'a str,
    toks: Vec<Token>,
    pos: usize,
}

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        self.toks.get(self.pos).map_or(&Tok::Eof, |t| &t.tok)
    }

    fn peek_at(&self, ahead: usize) -> &Tok {
        self.toks
            .get(self.pos + ahead)
            .map_or(&Tok::Eof, |t| &t.tok)
    }

    fn bump(&mut self) -> Tok {
        let tok = self.peek().clone();
        if self.pos < self.toks.len() {
            self.pos += 1;
        }
        tok
    }

    /// The error Salesforce gives for the current token.
    fn unexpected(&self) -> SoqlError {
        match self.toks.get(self.pos) {
            Some(t) => unexpected(self.src, t.start, t.end),
            None => unexpected(self.src, self.src.len(), self.src.len()),
        }
    }

    fn at_kw(&self, kw: &str) -> bool {
        matches!(self.peek(), Tok::Word(w) if w.eq_ignore_ascii_case(kw))
    }

    fn eat_kw(&mut self, kw: &str) -> bool {
        let at = self.at_kw(kw);
        if at {
            self.pos += 1;
        }
        at
    }

    fn expect_kw(&mut self, kw: &str) -> Result<(), SoqlError> {
        if self.eat_kw(kw) {
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn expect(&mut self, tok: &Tok) -> Result<(), SoqlError> {
        if self.peek() == tok {
            self.pos += 1;
            Ok(())
        } else {
            Err(self.unexpected())
        }
    }

    fn query(&mut self) -> Result<Query, SoqlError> {
        self.expect_kw("SELECT")?;
        let (select, count_only) = self.select_list()?;
        self.expect_kw("FROM")?;
        let from = match self.peek() {
            Tok::Word(w) if !w.contains('.') && !is_reserved(w) => w.clone(),
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        let filter = if self.eat_kw("WHERE") {
            Some(self.condition()?)
        } else {
            None
        };
        let mut order_by = Vec::new();
        if self.at_kw("ORDER")
            && matches!(self.peek_at(1), Tok::Word(w) if w.eq_ignore_ascii_case("BY"))
        {
            self.pos += 2;
            order_by = self.order_list()?;
        }
        let limit = if self.eat_kw("LIMIT") {
            Some(self.count()?)
        } else {
            None
        };
        let offset = if self.eat_kw("OFFSET") {
            Some(self.count()?)
        } else {
            None
        };
        if offset.is_some_and(|n| n > MAX_OFFSET) {
            return Err(SoqlError {
                code: "NUMBER_OUTSIDE_VALID_RANGE",
                message: format!(
                    "Maximum SOQL offset allowed is {MAX_OFFSET}: page further with a WHERE \
                     condition on the ORDER BY keys instead"
                ),
            });
        }
        if *self.peek() != Tok::Eof {
            return Err(self.unexpected());
        }
        Ok(Query {
            select,
            from,
            filter,
            order_by,
            limit,
            offset,
            count_only,
        })
    }

    fn select_list(&mut self) -> Result<(Vec<FieldRef>, bool), SoqlError> {
        if self.at_kw("COUNT") && *self.peek_at(1) == Tok::LParen {
            self.pos += 2;
            self.expect(&Tok::RParen)?;
            return Ok((Vec::new(), true));
        }
        let mut fields: Vec<FieldRef> = Vec::new();
        loop {
            let start = self.pos;
            let field = self.field()?;
            if fields.iter().any(|f| f.same_as(&field)) {
                let at = &self.toks[start];
                return Err(SoqlError::malformed(format!(
                    "duplicate field selected: {field} (at {}): select each field once",
                    super::lex::position(self.src, at.start)
                )));
            }
            fields.push(field);
            if *self.peek() != Tok::Comma {
                return Ok((fields, false));
            }
            self.pos += 1;
        }
    }

    fn field(&mut self) -> Result<FieldRef, SoqlError> {
        let Tok::Word(w) = self.peek() else {
            return Err(self.unexpected());
        };
        let path: Vec<String> = w.split('.').map(str::to_string).collect();
        let well_formed = path.iter().all(|seg| {
            seg.chars()
                .next()
                .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        });
        if !well_formed || is_reserved(w) {
            return Err(self.unexpected());
        }
        self.pos += 1;
        Ok(FieldRef { path })
    }

    /// A condition: one term, a `NOT` of one term, or terms joined by a single kind of
    /// operator. Mixing `AND` and `OR` without parentheses is left for the caller to reject
    /// at the second operator, which is where Salesforce points.
    fn condition(&mut self) -> Result<Expr, SoqlError> {
        if self.eat_kw("NOT") {
            return Ok(Expr::Not(Box::new(self.term()?)));
        }
        let first = self.term()?;
        for (kw, join) in [
            ("AND", Expr::And as fn(Vec<Expr>) -> Expr),
            ("OR", Expr::Or),
        ] {
            if self.at_kw(kw) {
                let mut parts = vec![first];
                while self.eat_kw(kw) {
                    parts.push(self.term()?);
                }
                return Ok(join(parts));
            }
        }
        Ok(first)
    }

    fn term(&mut self) -> Result<Expr, SoqlError> {
        if *self.peek() == Tok::LParen {
            self.pos += 1;
            let inner = self.condition()?;
            self.expect(&Tok::RParen)?;
            return Ok(inner);
        }
        let field = self.field()?;
        match self.peek().clone() {
            Tok::Op(op) => {
                self.pos += 1;
                let value = self.literal()?;
                Ok(Expr::Compare { field, op, value })
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("LIKE") => {
                self.pos += 1;
                if let Tok::Str(lit) = self.bump() {
                    Ok(Expr::Like {
                        field,
                        pattern: LikePattern::new(lit.value, &lit.pattern),
                    })
                } else {
                    self.pos -= 1;
                    Err(self.unexpected())
                }
            }
            Tok::Word(w) if w.eq_ignore_ascii_case("IN") => {
                self.pos += 1;
                Ok(Expr::In {
                    field,
                    negated: false,
                    values: self.in_list()?,
                })
            }
            Tok::Word(w)
                if w.eq_ignore_ascii_case("NOT")
                    && matches!(self.peek_at(1), Tok::Word(n) if n.eq_ignore_ascii_case("IN")) =>
            {
                self.pos += 2;
                Ok(Expr::In {
                    field,
                    negated: true,
                    values: self.in_list()?,
                })
            }
            _ => Err(self.unexpected()),
        }
    }

    fn in_list(&mut self) -> Result<InList, SoqlError> {
        self.expect(&Tok::LParen)?;
        let mut values = Vec::new();
        loop {
            values.push(self.literal()?);
            match self.peek() {
                Tok::Comma => self.pos += 1,
                Tok::RParen => {
                    self.pos += 1;
                    return Ok(InList::new(values));
                }
                _ => return Err(self.unexpected()),
            }
        }
    }

    fn literal(&mut self) -> Result<Literal, SoqlError> {
        let lit = match self.peek().clone() {
            Tok::Str(s) => Literal::String(s.value),
            Tok::Number(n) => Literal::Number(n),
            Tok::Date(d) => Literal::Date(d),
            Tok::DateTime(dt) => Literal::DateTime(dt),
            Tok::Word(w) => match w.to_ascii_uppercase().as_str() {
                "NULL" => Literal::Null,
                "TRUE" => Literal::Bool(true),
                "FALSE" => Literal::Bool(false),
                "TODAY" => Literal::Relative(RelativeDate::Today),
                "YESTERDAY" => Literal::Relative(RelativeDate::Yesterday),
                "TOMORROW" => Literal::Relative(RelativeDate::Tomorrow),
                "LAST_N_DAYS" | "NEXT_N_DAYS" => {
                    let last = w.eq_ignore_ascii_case("LAST_N_DAYS");
                    self.pos += 1;
                    self.expect(&Tok::Colon)?;
                    let n = self.count()?;
                    let n = u32::try_from(n).map_err(|_| self.unexpected())?;
                    return Ok(Literal::Relative(if last {
                        RelativeDate::LastNDays(n)
                    } else {
                        RelativeDate::NextNDays(n)
                    }));
                }
                _ => return Err(self.unexpected()),
            },
            _ => return Err(self.unexpected()),
        };
        self.pos += 1;
        Ok(lit)
    }

    fn order_list(&mut self) -> Result<Vec<Order>, SoqlError> {
        let mut keys = Vec::new();
        loop {
            let field = self.field()?;
            let descending = if self.eat_kw("DESC") {
                true
            } else {
                self.eat_kw("ASC");
                false
            };
            let nulls_first = if self.eat_kw("NULLS") {
                if self.eat_kw("FIRST") {
                    true
                } else {
                    self.expect_kw("LAST")?;
                    false
                }
            } else {
                !descending
            };
            keys.push(Order {
                field,
                descending,
                nulls_first,
            });
            if *self.peek() != Tok::Comma {
                return Ok(keys);
            }
            self.pos += 1;
        }
    }

    /// A non-negative whole number (LIMIT, OFFSET, LAST_N_DAYS:n).
    fn count(&mut self) -> Result<usize, SoqlError> {
        match self.peek() {
            Tok::Number(n) if *n >= 0.0 && n.fract() == 0.0 && *n <= f64::from(u32::MAX) => {
                // Whole and in range, so the conversion is exact.
                let n = *n as usize;
                self.pos += 1;
                Ok(n)
            }
            _ => Err(self.unexpected()),
        }
    }
}

fn is_reserved(word: &str) -> bool {
    RESERVED.iter().any(|r| r.eq_ignore_ascii_case(word))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::salesforce::soql::CmpOp;

    fn q(s: &str) -> Query {
        parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    fn err(s: &str) -> SoqlError {
        match parse(s) {
            Ok(q) => panic!("{s} parsed: {q:?}"),
            Err(e) => e,
        }
    }

    fn f(p: &str) -> FieldRef {
        FieldRef::new(p.split('.'))
    }

    #[test]
    fn select_fields_and_relationships_keep_their_case() {
        let query = q("select Id, lastName, Account.Name from Contact");
        assert_eq!(
            query.select,
            vec![f("Id"), f("lastName"), f("Account.Name")]
        );
        assert_eq!(query.from, "Contact");
        assert!(!query.count_only);
        assert_eq!(query.filter, None);
    }

    #[test]
    fn count_query() {
        let query = q("SELECT COUNT() FROM Contact WHERE IsDeleted = false");
        assert!(query.count_only);
        assert!(query.select.is_empty());
        assert!(
            err("SELECT COUNT(), Id FROM Contact")
                .message
                .contains("unexpected token: ','")
        );
    }

    #[test]
    fn where_comparisons_and_literals() {
        let query = q("SELECT Id FROM Contact WHERE SystemModstamp >= 2026-11-24T10:00:00Z");
        let Some(Expr::Compare { field, op, value }) = query.filter else {
            panic!()
        };
        assert_eq!((field, op), (f("SystemModstamp"), CmpOp::Ge));
        assert!(matches!(value, Literal::DateTime(_)));
        for (text, lit) in [
            ("null", Literal::Null),
            ("TRUE", Literal::Bool(true)),
            ("false", Literal::Bool(false)),
            ("-2.5", Literal::Number(-2.5)),
            ("'O\\'Brien'", Literal::String("O'Brien".into())),
            ("TODAY", Literal::Relative(RelativeDate::Today)),
            (
                "LAST_N_DAYS:30",
                Literal::Relative(RelativeDate::LastNDays(30)),
            ),
            (
                "next_n_days : 2",
                Literal::Relative(RelativeDate::NextNDays(2)),
            ),
        ] {
            let query = q(&format!("SELECT Id FROM Contact WHERE X__c != {text}"));
            assert_eq!(
                query.filter,
                Some(Expr::Compare {
                    field: f("X__c"),
                    op: CmpOp::Ne,
                    value: lit
                }),
                "{text}"
            );
        }
    }

    #[test]
    fn like_in_not_in() {
        let query = q(
            "SELECT Id FROM Contact WHERE Name LIKE 'a%' AND Id IN ('1','2') AND Id NOT IN ('3')",
        );
        let Some(Expr::And(parts)) = query.filter else {
            panic!()
        };
        assert!(matches!(&parts[0], Expr::Like { pattern, .. } if pattern.text == "a%"));
        assert!(
            matches!(&parts[1], Expr::In { negated: false, values, .. } if values.values.len() == 2)
        );
        assert!(matches!(&parts[2], Expr::In { negated: true, .. }));
        assert!(
            err("SELECT Id FROM Contact WHERE Name LIKE 5")
                .message
                .contains("'5'")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE Id IN ()")
                .message
                .contains("')'")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE Id IN (SELECT Id FROM Contact)")
                .message
                .contains("'SELECT'")
        );
    }

    #[test]
    fn and_or_cannot_mix_without_parentheses() {
        let e = err("SELECT Id FROM Contact WHERE a = 1 OR b = 2 AND c = 3");
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(
            e.message.contains("unexpected token: 'AND'"),
            "{}",
            e.message
        );
        let query = q("SELECT Id FROM Contact WHERE a = 1 OR (b = 2 AND c = 3)");
        let Some(Expr::Or(parts)) = query.filter else {
            panic!()
        };
        assert!(matches!(&parts[1], Expr::And(inner) if inner.len() == 2));
        let query = q("SELECT Id FROM Contact WHERE (a = 1 OR b = 2) AND c = 3");
        assert!(matches!(query.filter, Some(Expr::And(ref p)) if matches!(p[0], Expr::Or(_))));
        let query = q("SELECT Id FROM Contact WHERE a = 1 AND b = 2 AND c = 3");
        assert!(matches!(query.filter, Some(Expr::And(ref p)) if p.len() == 3));
    }

    #[test]
    fn not_starts_a_condition_only() {
        let query = q("SELECT Id FROM Contact WHERE NOT Name = 'x'");
        assert!(matches!(query.filter, Some(Expr::Not(_))));
        let query = q("SELECT Id FROM Contact WHERE a = 1 AND (NOT Name = 'x')");
        assert!(matches!(query.filter, Some(Expr::And(_))));
        assert!(
            err("SELECT Id FROM Contact WHERE a = 1 AND NOT b = 2")
                .message
                .contains("'NOT'")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE NOT a = 1 AND b = 2")
                .message
                .contains("'AND'")
        );
    }

    #[test]
    fn order_by_limit_offset() {
        let query = q(
            "SELECT Id FROM Contact ORDER BY SystemModstamp, Id DESC, Name ASC NULLS LAST, \
             Email DESC NULLS FIRST LIMIT 200 OFFSET 10",
        );
        let keys: Vec<_> = query
            .order_by
            .iter()
            .map(|o| (o.field.dotted(), o.descending, o.nulls_first))
            .collect();
        assert_eq!(
            keys,
            vec![
                ("SystemModstamp".to_string(), false, true),
                ("Id".to_string(), true, false),
                ("Name".to_string(), false, false),
                ("Email".to_string(), true, true),
            ]
        );
        assert_eq!((query.limit, query.offset), (Some(200), Some(10)));
        assert!(
            err("SELECT Id FROM Contact LIMIT -1")
                .message
                .contains("'-1'")
        );
        assert!(
            err("SELECT Id FROM Contact LIMIT 1.5")
                .message
                .contains("'1.5'")
        );
        assert!(
            err("SELECT Id FROM Contact OFFSET 1 LIMIT 1")
                .message
                .contains("'LIMIT'")
        );
    }

    #[test]
    fn malformed_statements_point_at_the_token() {
        let e = err("SELECT Id FORM Contact");
        assert_eq!(e.code, "MALFORMED_QUERY");
        assert!(
            e.message.contains("unexpected token: 'FORM'"),
            "{}",
            e.message
        );
        assert!(
            e.message.contains("ERROR at Row:1:Column:10"),
            "{}",
            e.message
        );
        assert!(err("SELECT FROM Contact").message.contains("'FROM'"));
        assert!(err("SELECT Id FROM").message.contains("'<EOF>'"));
        assert!(err("").message.contains("'<EOF>'"));
        assert!(
            err("SELECT Id FROM Contact WHERE")
                .message
                .contains("'<EOF>'")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE Name = 'x' GROUP BY Name")
                .message
                .contains("'GROUP'")
        );
        assert!(
            err("SELECT Id, MAX(Name) FROM Contact")
                .message
                .contains("'('")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE (Name = 'x'")
                .message
                .contains("'<EOF>'")
        );
        assert!(
            err("SELECT Id FROM Contact WHERE Name = bogus")
                .message
                .contains("'bogus'")
        );
        assert!(
            err("SELECT Account..Name FROM Contact")
                .message
                .contains("Account..Name")
        );
        assert!(
            err("SELECT Id, id FROM Contact")
                .message
                .contains("duplicate field")
        );
        let e = err("SELECT Id\nFROM Contact\nWHERE Name = 'x' OR Name = 'y' AND Id = null");
        assert!(e.message.contains("Row:3:Column:31"), "{}", e.message);
    }

    #[test]
    fn long_in_list_of_ids_parses() {
        let ids: Vec<String> = (0..2000)
            .map(|i| format!("'003000000000{i:03}AAA'"))
            .collect();
        let query = q(&format!(
            "SELECT Id FROM Contact WHERE Id IN ({})",
            ids.join(", ")
        ));
        assert!(
            matches!(query.filter, Some(Expr::In { ref values, .. }) if values.values.len() == 2000)
        );
    }
}
